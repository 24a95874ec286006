// One source of truth: the construct's synthesized template must create what cfn/tasker.yaml
// creates for the same settings — resource types, every property (event pattern, table schema
// and index, event-source mapping, IAM actions and resources, key and queue policies,
// environment), deletion policies — so the two cannot drift apart.
import { strict as assert } from 'assert';
import { test } from 'node:test';
import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { canonical, evaluate, readYamlTemplate, TASKER_YAML } from './support/cfn';
import { synthTasker, TaskerPropsFor } from './support/stack';

// Resource-level conditions of cfn/tasker.yaml that the construct models with a prop; the
// variants below take both ways of each. A resource under any other condition would be something
// the construct does not create: it is left out of the comparison and named in the diagnostics.
const MODELLED_CONDITIONS = new Set(['HasReconcileSchedule', 'HasAlarmTopic']);

const ALARM_TOPIC_ARN = 'arn:aws:sns:us-east-1:123456789012:tasker-alarms';

interface Variant {
  name: string;
  parameters: Record<string, string>;
  props: TaskerPropsFor;
}

const VARIANTS: Variant[] = [
  {
    name: 'cluster with a database user, every default',
    parameters: { ClusterIdentifier: 'local', Database: 'dev', DbUser: 'awsuser' },
    props: { redshiftTargetProps: { clusterIdentifier: 'local', dbName: 'dev', dbUser: 'awsuser' } },
  },
  {
    name: 'cluster with a secret, arm64, alarms, active tracing, tuned function, queue and table',
    parameters: {
      ClusterIdentifier: 'analytics',
      Database: 'warehouse',
      SecretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:tasker-AbCdEf',
      FunctionTimeout: '300',
      MemorySize: '1024',
      ReservedConcurrency: '5',
      LogLevel: 'DEBUG',
      LogRetentionDays: '14',
      TtlDays: '3',
      ReconcileSchedule: 'rate(10 minutes)',
      ReconcileAfterSeconds: '600',
      MaxReceiveCount: '7',
      Architecture: 'arm64',
      AlarmTopicArn: ALARM_TOPIC_ARN,
      Tracing: 'Active',
      SystemLogLevel: 'WARN',
      MetricsNamespace: 'Etl/Tasker',
    },
    props: (stack) => ({
      redshiftTargetProps: {
        clusterIdentifier: 'analytics',
        dbName: 'warehouse',
        secretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:tasker-AbCdEf',
      },
      starterLambdaFunctionProps: {
        timeout: Duration.seconds(300),
        memorySize: 1024,
        reservedConcurrentExecutions: 5,
        architecture: lambda.Architecture.ARM_64,
      },
      logLevel: 'DEBUG',
      logRetention: logs.RetentionDays.TWO_WEEKS,
      ttlDays: 3,
      reconcileSchedule: events.Schedule.rate(Duration.minutes(10)),
      reconcileAfter: Duration.seconds(600),
      maxReceiveCount: 7,
      alarmTopic: sns.Topic.fromTopicArn(stack, 'AlarmTopic', ALARM_TOPIC_ARN),
      tracing: lambda.Tracing.ACTIVE,
      systemLogLevel: lambda.SystemLogLevel.WARN,
      metricsNamespace: 'Etl/Tasker',
    }),
  },
  {
    name: 'workgroup scoped by id, no reconcile schedule',
    parameters: {
      WorkgroupName: 'etl',
      WorkgroupId: '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0',
      Database: 'dev',
      ReconcileSchedule: '',
      FunctionTimeout: '30',
    },
    props: {
      redshiftTargetProps: { workgroupName: 'etl', workgroupId: '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0', dbName: 'dev' },
      enableReconcile: false,
      starterLambdaFunctionProps: { timeout: Duration.seconds(30) },
    },
  },
  {
    name: 'any workgroup with a secret',
    parameters: {
      WorkgroupName: 'etl',
      Database: 'dev',
      SecretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:wg-AbCdEf',
    },
    props: {
      redshiftTargetProps: {
        workgroupName: 'etl',
        dbName: 'dev',
        secretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:wg-AbCdEf',
      },
    },
  },
];

for (const variant of VARIANTS) {
  test(`construct equals cfn/tasker.yaml: ${variant.name}`, (t) => {
    const yaml = evaluate(readYamlTemplate(TASKER_YAML), {
      ...variant.parameters,
      CodeS3Bucket: 'unused-bucket',
      CodeS3Key: 'unused.zip',
    });
    const { template, names } = synthTasker(variant.props);
    const rename = (id: string) => names.get(id) ?? id;
    const synthesized = evaluate(template.toJSON(), {}, rename);
    // The CDK bootstrap version check is the toolkit's, not the tasker's.
    const fromConstruct = new Map([...synthesized].filter(([, r]) => r.resource.Type !== 'AWS::CDK::Metadata'));

    const compared: string[] = [];
    for (const [name, { condition, resource }] of yaml) {
      if (condition && !MODELLED_CONDITIONS.has(condition)) {
        t.diagnostic(`not compared: ${name} (${resource.Type}) exists only under condition ${condition}`);
        continue;
      }
      const ours = fromConstruct.get(name);
      assert.ok(ours, `cfn/tasker.yaml creates ${name} (${resource.Type}); the construct does not`);
      assert.deepEqual(canonical(ours.resource), canonical(resource), `${name} differs from cfn/tasker.yaml`);
      compared.push(name);
    }
    for (const [name, { resource }] of fromConstruct) {
      assert.ok(compared.includes(name), `the construct creates ${name} (${resource.Type}); cfn/tasker.yaml does not`);
    }
    // The comparison covered the tasker's whole architecture, not an empty intersection.
    for (const core of ['Key', 'StateTable', 'CompletionQueue', 'CompletionRule', 'CompletionQueuePolicy',
      'FunctionRole', 'Function', 'CompletionEventSource', 'Dashboard']) {
      assert.ok(compared.includes(core), `${core} was not compared`);
    }
  });
}

test('the comparison notices a drift', () => {
  // A construct with another batch size must not pass as cfn/tasker.yaml's.
  const yaml = evaluate(readYamlTemplate(TASKER_YAML), {
    ClusterIdentifier: 'local', Database: 'dev', DbUser: 'awsuser', CodeS3Bucket: 'b', CodeS3Key: 'k',
  });
  const { template, names } = synthTasker({ queueProps: { retentionPeriod: Duration.days(2) } });
  const ours = evaluate(template.toJSON(), {}, (id) => names.get(id) ?? id);
  assert.notDeepEqual(
    canonical(ours.get('CompletionQueue')!.resource),
    canonical(yaml.get('CompletionQueue')!.resource),
  );
  assert.deepEqual(canonical(ours.get('StateTable')!.resource), canonical(yaml.get('StateTable')!.resource));
  // The dashboard's body is compared, not only its presence: another namespace shows.
  const renamed = synthTasker({ metricsNamespace: 'Other' });
  const dashboard = evaluate(renamed.template.toJSON(), {}, (id) => renamed.names.get(id) ?? id).get('Dashboard')!;
  assert.notDeepEqual(canonical(dashboard.resource), canonical(yaml.get('Dashboard')!.resource));
  assert.deepEqual(canonical(ours.get('Dashboard')!.resource), canonical(yaml.get('Dashboard')!.resource));
});

test('the evaluator reads Fn::Sub with a variable map: its variables first, then parameters and references', () => {
  const template = {
    Parameters: { Ns: { Type: 'String', Default: 'FromParameter' }, Env: { Type: 'String', Default: 'prod' } },
    Resources: {
      Queue: { Type: 'AWS::SQS::Queue', Properties: {} },
      Thing: {
        Type: 'AWS::Test::Thing',
        Properties: {
          Text: { 'Fn::Sub': ['${Ns}/${Env}/${Q}/${Queue.Arn}/${AWS::Region}', { Ns: 'FromVariable', Q: { 'Fn::GetAtt': ['Queue', 'QueueName'] } }] },
        },
      },
    },
  };
  const thing = evaluate(template, {}).get('Thing')!.resource;
  assert.equal(thing.Properties.Text, 'FromVariable/prod/${Queue.QueueName}/${Queue.Arn}/${AWS::Region}');
  assert.throws(() => evaluate({ Resources: { T: { Type: 'X', Properties: { A: { 'Fn::Sub': ['x'] } } } } }, {}),
    /Fn::Sub takes a string or \[string, \{variables\}\]/);
});
