// Synthesizes an SfnRedshiftTasker in a stack of its own, for assertions on its template.
import * as path from 'path';
import { App, CfnResource, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SfnRedshiftTasker, SfnRedshiftTaskerProps } from '../../src';

/** Stand-in code: unit tests need an asset, not the real binary. */
export const FAKE_CODE_DIR = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'code');

export function fakeCode(): lambda.Code {
  return lambda.Code.fromAsset(FAKE_CODE_DIR);
}

export interface Synthesized {
  stack: Stack;
  tasker: SfnRedshiftTasker;
  template: Template;
  /** CDK logical id -> the name the construct gave it (StateTable, CompletionQueuePolicy, ...). */
  names: Map<string, string>;
}

/** Props, or a function of the stack making them (for props that refer to other resources). */
export type TaskerPropsFor = Partial<SfnRedshiftTaskerProps> | ((stack: Stack) => Partial<SfnRedshiftTaskerProps>);

export function synthTasker(propsFor: TaskerPropsFor = {}): Synthesized {
  const app = new App();
  const stack = new Stack(app, 'TestStack');
  const props = typeof propsFor === 'function' ? propsFor(stack) : propsFor;
  const tasker = new SfnRedshiftTasker(stack, 'Tasker', {
    redshiftTargetProps: { clusterIdentifier: 'local', dbName: 'dev', dbUser: 'awsuser' },
    code: fakeCode(),
    ...props,
  });
  const names = new Map<string, string>();
  for (const child of tasker.node.findAll()) {
    if (!CfnResource.isCfnResource(child)) continue;
    const parts = child.node.path.split('/').slice(2).filter((p) => p !== 'Resource');
    let name = parts[0];
    if (child.cfnResourceType === 'AWS::SQS::QueuePolicy') name = `${parts[0]}Policy`;
    if (child.cfnResourceType === 'AWS::Lambda::Permission') name = 'ReconcilePermission';
    names.set(stack.getLogicalId(child), name);
  }
  return { stack, tasker, template: Template.fromStack(stack), names };
}
