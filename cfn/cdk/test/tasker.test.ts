// SfnRedshiftTasker: what each prop does to the synthesized template, and the refusals.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, test } from 'node:test';
import { Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { bundledCode, lambdaZipName, SfnRedshiftTasker } from '../src';
import { synthTasker, TaskerPropsFor } from './support/stack';

function only(template: any, type: string): any {
  const found = Object.values(template.findResources(type));
  assert.equal(found.length, 1, `one ${type} expected, found ${found.length}`);
  return found[0];
}

function environment(props: TaskerPropsFor = {}): Record<string, unknown> {
  return only(synthTasker(props).template, 'AWS::Lambda::Function').Properties.Environment.Variables;
}

function roleStatements(props: TaskerPropsFor = {}): any[] {
  return only(synthTasker(props).template, 'AWS::IAM::Role').Properties.Policies[0].PolicyDocument.Statement;
}

function statement(statements: any[], sid: string): any {
  const found = statements.find((s) => s.Sid === sid);
  assert.ok(found, `no statement ${sid}`);
  return found;
}

function refuses(props: TaskerPropsFor, message: RegExp): void {
  assert.throws(() => synthTasker(props), message);
}

const sharedTable = (stack: any, keyed = false) =>
  dynamodb.Table.fromTableAttributes(stack, 'Shared', {
    tableName: 'shared-state',
    encryptionKey: keyed ? new kms.Key(stack, 'SharedKey') : undefined,
  });

describe('defaults', () => {
  test('the resources of cfn/tasker.yaml, and the properties the seed exposed', () => {
    const { template, tasker } = synthTasker();
    template.resourceCountIs('AWS::KMS::Key', 1);
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.resourceCountIs('AWS::SQS::Queue', 2);
    template.resourceCountIs('AWS::Events::Rule', 2);
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
    template.resourceCountIs('AWS::Lambda::Permission', 1);
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    assert.ok(tasker.lambdaFunction && tasker.trackingTable && tasker.queue && tasker.deadLetterQueue && tasker.key);
    // Operations: a dashboard, no alarm without a topic, tracing passed through, no X-Ray policy.
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    assert.equal(tasker.dashboard, tasker.node.findChild('Dashboard'));
    assert.deepEqual(tasker.alarms, []);
    template.hasResourceProperties('AWS::Lambda::Function', {
      TracingConfig: { Mode: 'PassThrough' },
      Environment: { Variables: Match.objectLike({ METRICS_NAMESPACE: 'RedshiftTasker' }) },
    });
    assert.equal(only(template, 'AWS::IAM::Role').Properties.ManagedPolicyArns, undefined);
  });
});

describe('operations', () => {
  const TOPIC = 'arn:aws:sns:us-east-1:123456789012:ops';
  test('alarmTopic: six alarms notifying the topic, on the queues, the function and its metrics', () => {
    const { template, tasker } = synthTasker((stack) => ({
      alarmTopic: sns.Topic.fromTopicArn(stack, 'Ops', TOPIC),
      metricsNamespace: 'Etl/Tasker',
    }));
    template.resourceCountIs('AWS::CloudWatch::Alarm', 6);
    assert.deepEqual(tasker.alarms.map((a) => a.node.id), ['DeadLetterQueueAlarm', 'CompletionQueueAgeAlarm',
      'FunctionErrorsAlarm', 'FunctionThrottlesAlarm', 'CallbackFailuresAlarm', 'ReconcileOutcomeUnknownAlarm']);
    for (const alarm of Object.values(template.findResources('AWS::CloudWatch::Alarm')) as any[]) {
      assert.deepEqual(alarm.Properties.AlarmActions, [TOPIC]);
      assert.deepEqual(alarm.Properties.OKActions, [TOPIC]);
    }
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Etl/Tasker',
      MetricName: 'CallbackFailures',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: Match.stringLikeRegexp('^TaskerFunction') } }],
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TaskerDeadLetterQueue'), 'QueueName'] } }],
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ METRICS_NAMESPACE: 'Etl/Tasker' }) },
    });
  });
  test('without a dead-letter queue there is no dead-letter alarm or dashboard line', () => {
    const { template } = synthTasker((stack) => ({
      alarmTopic: sns.Topic.fromTopicArn(stack, 'Ops', TOPIC),
      deployDeadLetterQueue: false,
    }));
    template.resourceCountIs('AWS::CloudWatch::Alarm', 5);
    const body = only(template, 'AWS::CloudWatch::Dashboard').Properties.DashboardBody['Fn::Sub'];
    assert.doesNotMatch(body[0], /DeadLetterQueueName/);
    assert.match(body[0], /CompletionQueueName/);
  });
  test('tracing ACTIVE: the function traces and its role gets the X-Ray managed policy', () => {
    const { template } = synthTasker({ tracing: lambda.Tracing.ACTIVE });
    template.hasResourceProperties('AWS::Lambda::Function', { TracingConfig: { Mode: 'Active' } });
    const arns = JSON.stringify(only(template, 'AWS::IAM::Role').Properties.ManagedPolicyArns);
    assert.match(arns, /:iam::aws:policy\/AWSXRayDaemonWriteAccess/);
    // No separate policy: Function's own tracing option would add one.
    template.resourceCountIs('AWS::IAM::Policy', 0);
    refuses({ tracing: lambda.Tracing.DISABLED }, /tracing is ACTIVE or PASS_THROUGH/);
    refuses({ starterLambdaFunctionProps: { tracing: lambda.Tracing.ACTIVE } }, /tracing is not accepted.*tracing prop/);
  });
  test('the metrics namespace is checked as CloudWatch does', () => {
    refuses({ metricsNamespace: 'AWS/Lambda' }, /metricsNamespace 'AWS\/Lambda' must be .*not starting with AWS\//);
    refuses({ metricsNamespace: '' }, /metricsNamespace '' must be 1 to 255/);
  });
  test('dashboard names: the template\'s for a stack\'s only tasker, dashboardName, else CloudFormation\'s', () => {
    const one = only(synthTasker().template, 'AWS::CloudWatch::Dashboard');
    assert.deepEqual(one.Properties.DashboardName, { 'Fn::Sub': '${AWS::StackName}-redshift-tasker' });
    const named = only(synthTasker({ dashboardName: 'etl-tasker' }).template, 'AWS::CloudWatch::Dashboard');
    assert.equal(named.Properties.DashboardName, 'etl-tasker');
    const { template } = synthTasker((stack) => {
      new SfnRedshiftTasker(stack, 'Other', {
        redshiftTargetProps: { clusterIdentifier: 'other', dbName: 'dev', dbUser: 'u' },
        code: lambda.Code.fromAsset(path.join(__dirname, '..', '..', 'test', 'fixtures', 'code')),
      });
      return {};
    });
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard')) as any[];
    assert.equal(dashboards.length, 2);
    for (const d of dashboards) assert.equal(d.Properties.DashboardName, undefined);
  });
});

describe('redshiftTargetProps', () => {
  test('a workgroup fills WORKGROUP_NAME and leaves the cluster empty', () => {
    const env = environment({ redshiftTargetProps: { workgroupName: 'etl', dbName: 'dev' } });
    assert.equal(env.WORKGROUP_NAME, 'etl');
    assert.equal(env.CLUSTER_IDENTIFIER, '');
    assert.equal(env.DATABASE, 'dev');
  });
  test('a secret is the credentials statement', () => {
    const secretArn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf';
    const credentials = statement(
      roleStatements({ redshiftTargetProps: { clusterIdentifier: 'c', dbName: 'dev', secretArn } }),
      'DatabaseCredentials',
    );
    assert.equal(credentials.Action, 'secretsmanager:GetSecretValue');
    assert.equal(credentials.Resource, secretArn);
  });
  test('refusals say what to give', () => {
    refuses({ redshiftTargetProps: { dbName: 'dev', dbUser: 'u' } }, /exactly one of .*clusterIdentifier and workgroupName/);
    refuses({ redshiftTargetProps: { clusterIdentifier: 'c', workgroupName: 'w', dbName: 'dev', dbUser: 'u' } },
      /exactly one of/);
    refuses({ redshiftTargetProps: { clusterIdentifier: 'c', dbName: 'dev' } }, /a cluster needs .*dbUser or secretArn/);
    refuses({ redshiftTargetProps: { clusterIdentifier: 'c', dbName: 'dev', dbUser: 'u', secretArn: 'arn:s' } },
      /dbUser or secretArn, not both/);
    refuses({ redshiftTargetProps: { clusterIdentifier: 'c', dbName: '', dbUser: 'u' } }, /dbName is required/);
    refuses({ redshiftTargetProps: { clusterIdentifier: 'c', workgroupId: 'x', dbName: 'd', dbUser: 'u' } },
      /workgroupId needs workgroupName/);
  });
});

describe('table props', () => {
  test('existingTableObj: no table is created; the function uses and may use the given one and its key', () => {
    const { template, tasker } = synthTasker((stack) => ({ existingTableObj: sharedTable(stack, true) }));
    template.resourceCountIs('AWS::DynamoDB::Table', 0);
    assert.equal(tasker.trackingTable.node.id, 'Shared');
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ DDB_TABLE_NAME: 'shared-state' }) },
    });
    const statements = only(template, 'AWS::IAM::Role').Properties.Policies[0].PolicyDocument.Statement;
    assert.match(JSON.stringify(statement(statements, 'StateTable').Resource), /table\/shared-state\/index\/waiting-index/);
    // Its own key (queues) and the table's key.
    assert.equal(statement(statements, 'EncryptionKey').Resource.length, 2);
  });
  test('dynamoTableProps are applied, but the key schema and TTL stay the tasker\'s', () => {
    const { template } = synthTasker({
      dynamoTableProps: {
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        partitionKey: { name: 'other', type: dynamodb.AttributeType.NUMBER },
      },
    });
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }, { AttributeName: 'invocationId', KeyType: 'RANGE' }],
      TimeToLiveSpecification: { AttributeName: 'TTL', Enabled: true },
    });
  });
  test('tablePermissions: All and ReadWrite are accepted, Read and Write refused', () => {
    synthTasker({ tablePermissions: 'All' });
    synthTasker({ tablePermissions: 'ReadWrite' });
    refuses({ tablePermissions: 'Read' }, /tablePermissions 'Read' would break the tasker.*leave tablePermissions out/);
    refuses({ tablePermissions: 'Write' }, /tablePermissions 'Write'/);
  });
  test('existingTableObj with dynamoTableProps is refused', () => {
    refuses((stack) => ({ existingTableObj: sharedTable(stack), dynamoTableProps: { tableName: 'x' } }), /not both/);
  });
});

describe('createCallbackInfra', () => {
  test('false: a second tasker on the first one\'s table, with no queue, rule or schedule of its own', () => {
    const { template, tasker } = synthTasker((stack) => {
      const first = new SfnRedshiftTasker(stack, 'First', {
        redshiftTargetProps: { clusterIdentifier: 'one', dbName: 'dev', dbUser: 'u' },
        code: lambda.Code.fromAsset(path.join(__dirname, '..', '..', 'test', 'fixtures', 'code')),
      });
      return {
        redshiftTargetProps: { clusterIdentifier: 'two', dbName: 'dev', dbUser: 'u' },
        createCallbackInfra: false,
        existingTableObj: first.trackingTable,
      };
    });
    // Only the first tasker's.
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.resourceCountIs('AWS::SQS::Queue', 2);
    template.resourceCountIs('AWS::Events::Rule', 2);
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
    template.resourceCountIs('AWS::KMS::Key', 1);
    assert.equal(tasker.queue, undefined);
    assert.equal(tasker.key, undefined);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ CLUSTER_IDENTIFIER: 'two', DDB_TABLE_NAME: { Ref: Match.stringLikeRegexp('^FirstStateTable') } }) },
      Role: { 'Fn::GetAtt': [Match.stringLikeRegexp('^FirstFunctionRole'), 'Arn'] },
    });
    // One role: the first tasker's function can describe the second's statements. It gains the
    // second target and the second function's log group.
    template.resourceCountIs('AWS::IAM::Role', 1);
    const [policy] = Object.values(template.findResources('AWS::IAM::Policy')) as any[];
    assert.equal(policy.Properties.Roles.length, 1);
    assert.match(policy.Properties.Roles[0].Ref, /^FirstFunctionRole/);
    const sids = policy.Properties.PolicyDocument.Statement.map((s: any) => s.Sid);
    assert.deepEqual(sids, ['Logs', 'StartStatementsOnTheTarget', 'DatabaseCredentials']);
    assert.match(JSON.stringify(policy.Properties.PolicyDocument.Statement[1].Resource), /:cluster:two/);
    // Its dashboard shows its function; the queues are the first tasker's.
    const dashboard = template.toJSON().Resources[Stack.of(tasker).getLogicalId(tasker.dashboard)];
    assert.doesNotMatch(dashboard.Properties.DashboardBody['Fn::Sub'][0], /QueueName/);
  });
  test('false with a table from elsewhere: a role of its own, and a warning', () => {
    const { stack, template } = synthTasker((s) => ({ createCallbackInfra: false, existingTableObj: sharedTable(s) }));
    template.resourceCountIs('AWS::IAM::Role', 1);
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('not the trackingTable of an SfnRedshiftTasker'));
  });
  test('refusals', () => {
    refuses({ createCallbackInfra: false }, /shares the table of a first tasker; pass .* as existingTableObj/);
    refuses((stack) => ({ createCallbackInfra: false, existingTableObj: sharedTable(stack), queueProps: {} }),
      /queueProps needs createCallbackInfra/);
    refuses((stack) => ({ createCallbackInfra: false, existingTableObj: sharedTable(stack), enableReconcile: true }),
      /enableReconcile needs createCallbackInfra/);
  });
});

describe('logLevel', () => {
  test('sets LOG_LEVEL and Lambda\'s application log level; the seed\'s WARNING maps to WARN', () => {
    const { template } = synthTasker({ logLevel: 'warning' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      LoggingConfig: { ApplicationLogLevel: 'WARN', LogFormat: 'JSON', SystemLogLevel: 'INFO' },
      Environment: { Variables: Match.objectLike({ LOG_LEVEL: 'WARN' }) },
    });
  });
  test('systemLogLevel sets Lambda\'s own log level (default INFO, which keeps the REPORT lines)', () => {
    const { template } = synthTasker({ systemLogLevel: lambda.SystemLogLevel.WARN });
    template.hasResourceProperties('AWS::Lambda::Function', {
      LoggingConfig: Match.objectLike({ SystemLogLevel: 'WARN' }),
    });
    refuses({ starterLambdaFunctionProps: { systemLogLevelV2: lambda.SystemLogLevel.DEBUG } },
      /systemLogLevelV2 is not accepted.*systemLogLevel prop/);
  });
  test('an unknown level is refused', () => {
    refuses({ logLevel: 'VERBOSE' }, /logLevel 'VERBOSE' is not one of TRACE, DEBUG, INFO, WARN, ERROR/);
  });
});

describe('queue props', () => {
  test('existingQueueObj: no queues are created; the rule, policy and event source use it', () => {
    const { template, tasker } = synthTasker((stack) => ({
      existingQueueObj: new sqs.Queue(stack, 'Mine', { visibilityTimeout: Duration.minutes(10) }),
    }));
    template.resourceCountIs('AWS::SQS::Queue', 1);
    assert.equal(tasker.queue?.node.id, 'Mine');
    const mine = { 'Fn::GetAtt': [Match.stringLikeRegexp('^Mine'), 'Arn'] };
    template.hasResourceProperties('AWS::Events::Rule', { Targets: [Match.objectLike({ Arn: mine })] });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { EventSourceArn: mine });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', { Queues: [{ Ref: Match.stringLikeRegexp('^Mine') }] });
  });
  test('an imported existingQueueObj gets a warning about its policy', () => {
    const { stack } = synthTasker((s) => ({
      existingQueueObj: sqs.Queue.fromQueueArn(s, 'Imported', 'arn:aws:sqs:us-east-1:123456789012:q'),
    }));
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('existingQueueObj is imported'));
  });
  test('queueProps override the completion queue', () => {
    const { template } = synthTasker({ queueProps: { visibilityTimeout: Duration.seconds(999) } });
    template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 999 });
  });
  test('the visibility timeout is six times the function timeout', () => {
    const { template } = synthTasker({ starterLambdaFunctionProps: { timeout: Duration.seconds(120) } });
    template.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 720 });
    template.hasResourceProperties('AWS::Lambda::Function', { Timeout: 120 });
  });
  test('deployDeadLetterQueue: false leaves one queue without a redrive policy', () => {
    const { template, tasker } = synthTasker({ deployDeadLetterQueue: false });
    template.resourceCountIs('AWS::SQS::Queue', 1);
    template.hasResourceProperties('AWS::SQS::Queue', { RedrivePolicy: Match.absent() });
    assert.equal(tasker.deadLetterQueue, undefined);
    refuses({ deployDeadLetterQueue: false, deadLetterQueueProps: {} }, /deadLetterQueueProps needs deployDeadLetterQueue/);
  });
  test('deadLetterQueueProps and maxReceiveCount', () => {
    const { template } = synthTasker({
      deadLetterQueueProps: { retentionPeriod: Duration.days(7) },
      maxReceiveCount: 3,
    });
    template.hasResourceProperties('AWS::SQS::Queue', { MessageRetentionPeriod: 604800 });
    template.hasResourceProperties('AWS::SQS::Queue', { RedrivePolicy: Match.objectLike({ maxReceiveCount: 3 }) });
    refuses({ maxReceiveCount: 0 }, /maxReceiveCount must be a whole number from 1 to 1000/);
  });
  test('existingQueueObj with queueProps is refused', () => {
    refuses((stack) => ({ existingQueueObj: new sqs.Queue(stack, 'Q'), queueProps: {} }), /used as it is/);
  });
  test('enableQueuePurging is accepted and ignored, with a note', () => {
    const { stack, template } = synthTasker({ enableQueuePurging: true });
    template.resourceCountIs('AWS::SQS::Queue', 2);
    Annotations.fromStack(stack).hasInfo('*', Match.stringLikeRegexp('enableQueuePurging is ignored'));
  });
});

describe('encryption props', () => {
  test('without a customer-managed key: no key, AWS-managed table and queue encryption, no key statement', () => {
    const { template, tasker } = synthTasker({ enableEncryptionWithCustomerManagedKey: false });
    template.resourceCountIs('AWS::KMS::Key', 0);
    assert.equal(tasker.key, undefined);
    template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true });
    template.hasResourceProperties('AWS::DynamoDB::Table', { SSESpecification: { SSEEnabled: true } });
    const statements = only(template, 'AWS::IAM::Role').Properties.Policies[0].PolicyDocument.Statement;
    assert.equal(statements.find((s: any) => s.Sid === 'EncryptionKey'), undefined);
  });
  test('encryptionKey: used instead of a new key, and its policy lets EventBridge use it', () => {
    const { template, tasker } = synthTasker((stack) => ({ encryptionKey: new kms.Key(stack, 'MyKey') }));
    template.resourceCountIs('AWS::KMS::Key', 1);
    assert.equal(tasker.key?.node.id, 'MyKey');
    template.hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: {
        Statement: Match.arrayWith([Match.objectLike({ Sid: 'EventBridgeSendsToTheEncryptedQueue' })]),
      },
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^MyKey'), 'Arn'] },
    });
  });
  test('encryptionKeyProps apply to the created key', () => {
    const { template } = synthTasker({ encryptionKeyProps: { alias: 'alias/tasker', enableKeyRotation: false } });
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: false });
    template.hasResourceProperties('AWS::KMS::Alias', { AliasName: 'alias/tasker' });
  });
  test('refusals', () => {
    refuses((stack) => ({ encryptionKey: new kms.Key(stack, 'K'), enableEncryptionWithCustomerManagedKey: false }),
      /encryptionKey needs enableEncryptionWithCustomerManagedKey/);
    refuses((stack) => ({ encryptionKey: new kms.Key(stack, 'K'), encryptionKeyProps: {} }),
      /encryptionKeyProps configures the key the tasker creates/);
  });
});

describe('starterLambdaFunctionProps', () => {
  test('memory, architecture, concurrency and extra environment apply; the tasker\'s variables win', () => {
    const { template } = synthTasker({
      starterLambdaFunctionProps: {
        memorySize: 512,
        architecture: lambda.Architecture.ARM_64,
        reservedConcurrentExecutions: 4,
        environment: { EXTRA: 'yes', DATABASE: 'overridden' },
      },
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      MemorySize: 512,
      Architectures: ['arm64'],
      ReservedConcurrentExecutions: 4,
      Runtime: 'provided.al2023',
      Handler: 'bootstrap',
      Environment: { Variables: Match.objectLike({ EXTRA: 'yes', DATABASE: 'dev' }) },
    });
  });
  test('what the tasker owns is refused with what to do', () => {
    refuses({ starterLambdaFunctionProps: { runtime: lambda.Runtime.PYTHON_3_12 } }, /runtime is not accepted.*provided.al2023/);
    refuses({ starterLambdaFunctionProps: { handler: 'index.handler' } }, /handler is not accepted/);
    refuses({ starterLambdaFunctionProps: { logRetention: logs.RetentionDays.ONE_DAY } },
      /logRetention is not accepted.*logRetention prop of SfnRedshiftTasker/);
    refuses({ starterLambdaFunctionProps: { reservedConcurrentExecutions: 1 } }, /reserved concurrency of 1 throttles/);
    refuses({ starterLambdaFunctionProps: { timeout: Duration.minutes(16) } }, /cannot exceed 15 minutes/);
    refuses({ completerLambdaFunctionProps: {} }, /completerLambdaFunctionProps no longer applies.*starterLambdaFunctionProps/);
  });
});

describe('tasker settings', () => {
  test('ttlDays, reconcileAfter, reconcileSchedule and logRetention', () => {
    const { template } = synthTasker({
      ttlDays: 2,
      reconcileAfter: Duration.minutes(30),
      reconcileSchedule: events.Schedule.rate(Duration.minutes(15)),
      logRetention: logs.RetentionDays.ONE_WEEK,
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ TTL: '2', RECONCILE_AFTER_SECONDS: '1800' }) },
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(15 minutes)',
      Targets: [Match.objectLike({ Id: 'reconcile', Input: '{"action":"reconcile"}' })],
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    refuses({ ttlDays: 0 }, /ttlDays must be a whole number from 1 to 3650/);
    refuses({ reconcileAfter: Duration.days(2) }, /reconcileAfter must be from 1 second to 1 day/);
  });
  test('enableReconcile: false leaves out the schedule and its permission', () => {
    const { template } = synthTasker({ enableReconcile: false });
    template.resourceCountIs('AWS::Events::Rule', 1);
    template.resourceCountIs('AWS::Lambda::Permission', 0);
  });
});

describe('code', () => {
  test('the bundled zip of the architecture is used when the package holds one', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rstasker-code-'));
    try {
      fs.writeFileSync(path.join(dir, lambdaZipName(lambda.Architecture.ARM_64)), 'zip');
      assert.ok(bundledCode(lambda.Architecture.ARM_64, dir) instanceof lambda.AssetCode);
      assert.throws(() => bundledCode(lambda.Architecture.X86_64, dir),
        /no Lambda zip for x86_64.*lambda-zip.*or pass `code`/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
