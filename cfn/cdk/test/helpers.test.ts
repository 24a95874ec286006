// The task builders and the custom resources: the states and resources they render, and refusals.
import { strict as assert } from 'assert';
import { describe, test } from 'node:test';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { RedshiftSql, RedshiftSqlTask, RedshiftStatementCall, RedshiftUser, SfnRedshiftTasker } from '../src';
import { fakeCode } from './support/stack';

// A stack with a tasker, not synthesized yet: the test adds to it first.
function withTasker(): { stack: Stack; tasker: SfnRedshiftTasker } {
  const stack = new Stack(new App(), 'HelpersStack');
  const tasker = new SfnRedshiftTasker(stack, 'Tasker', {
    redshiftTargetProps: { clusterIdentifier: 'local', dbName: 'dev', dbUser: 'awsuser' },
    code: fakeCode(),
  });
  return { stack, tasker };
}

function onlyResource(stack: Stack, type: string): any {
  const found = Object.values(Template.fromStack(stack).findResources(type));
  assert.equal(found.length, 1);
  return found[0];
}

function stateJson(stack: Stack, state: sfn.State): any {
  return stack.resolve(state.toStateJson());
}

describe('RedshiftSqlTask', () => {
  test('the waitForTaskToken task with the seed\'s Retry, HeartbeatSeconds, Catch FAILED and an idempotency key', () => {
    const { stack, tasker } = withTasker();
    const failed = new sfn.Pass(stack, 'Failed');
    const task = new RedshiftSqlTask(stack, 'Run', { tasker, sqlStatement: 'select 1', onSqlFailure: failed });
    const json = stateJson(stack, task);
    assert.match(JSON.stringify(json.Resource), /:states:::lambda:invoke\.waitForTaskToken/);
    assert.equal(json.HeartbeatSeconds, 3600);
    assert.deepEqual(json.Retry, [
      {
        ErrorEquals: ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException'],
        IntervalSeconds: 2, MaxAttempts: 6, BackoffRate: 2,
      },
      { ErrorEquals: ['Lambda.TooManyRequestsException'], IntervalSeconds: 1, MaxAttempts: 10, BackoffRate: 1.5 },
    ]);
    assert.deepEqual(json.Catch, [{ ErrorEquals: ['FAILED'], ResultPath: '$.error', Next: 'Failed' }]);
    assert.deepEqual(json.Parameters.Payload, {
      action: 'executeStatement',
      sqlStatement: 'select 1',
      'taskToken.$': '$$.Task.Token',
      'executionArn.$': '$$.Execution.Id',
      'idempotencyKey.$': "States.Format('{}:{}:{}', $$.Execution.Id, $$.State.Name, $$.State.EnteredTime)",
    });
  });
  test('sqlStatements, parameters, target overrides, a singleton, a heartbeat and a key of one\'s own', () => {
    const { stack, tasker } = withTasker();
    const batch = stateJson(stack, new RedshiftSqlTask(stack, 'Batch', {
      tasker,
      sqlStatements: ['insert into t values (:v)', 'select 1'],
      parameters: [{ name: 'v', value: sfn.JsonPath.stringAt('$.value') }],
      target: { database: 'other', dbUser: 'loader' },
      heartbeat: Duration.minutes(5),
      idempotencyKey: sfn.JsonPath.format('{}-{}', sfn.JsonPath.executionId, sfn.JsonPath.stringAt('$$.Map.Item.Index')),
    }));
    assert.equal(batch.HeartbeatSeconds, 300);
    assert.deepEqual(batch.Parameters.Payload.sqlStatements, ['insert into t values (:v)', 'select 1']);
    assert.deepEqual(batch.Parameters.Payload.parameters, [{ name: 'v', 'value.$': '$.value' }]);
    assert.equal(batch.Parameters.Payload.database, 'other');
    assert.equal(batch.Parameters.Payload.dbUser, 'loader');
    assert.equal(batch.Parameters.Payload['idempotencyKey.$'], "States.Format('{}-{}', $$.Execution.Id, $$.Map.Item.Index)");
    assert.equal(batch.Catch, undefined);
    const singleton = stateJson(stack, new RedshiftSqlTask(stack, 'Single', {
      tasker: tasker.lambdaFunction, sqlStatement: 'call p()', singleton: true, idempotencyKey: false,
    }));
    assert.equal(singleton.Parameters.Payload.action, 'executeSingletonStatement');
    assert.ok(!('idempotencyKey.$' in singleton.Parameters.Payload) && !('idempotencyKey' in singleton.Parameters.Payload));
  });
  test('refusals', () => {
    const { stack, tasker } = withTasker();
    assert.throws(() => new RedshiftSqlTask(stack, 'A', { tasker }), /exactly one of sqlStatement and sqlStatements/);
    assert.throws(() => new RedshiftSqlTask(stack, 'B', { tasker, sqlStatement: 'x', sqlStatements: ['y'] }), /exactly one/);
    assert.throws(() => new RedshiftSqlTask(stack, 'C', { tasker, sqlStatements: Array(41).fill('select 1') }),
      /1 to 40 statements, not 41/);
    assert.throws(() => new RedshiftSqlTask(stack, 'D', { tasker, sqlStatements: ['a'], singleton: true }),
      /singleton runs one sqlStatement/);
    assert.throws(() => new RedshiftSqlTask(stack, 'E', { tasker, sqlStatement: 'x', heartbeat: Duration.hours(25) }),
      /heartbeat cannot exceed 24 hours/);
  });
});

describe('RedshiftStatementCall', () => {
  test('describe LATEST by default; start without a token; read a page', () => {
    const { stack, tasker } = withTasker();
    const describe = stateJson(stack, new RedshiftStatementCall(stack, 'Describe', { tasker, action: 'describeStatement' }));
    assert.deepEqual(describe.Parameters.Payload ?? describe.Parameters, {
      action: 'describeStatement', statementId: 'LATEST', 'executionArn.$': '$$.Execution.Id',
    });
    assert.equal(describe.Retry.length, 2);
    const start = stateJson(stack, new RedshiftStatementCall(stack, 'Start', {
      tasker, action: 'executeStatement', sqlStatement: 'select 1',
    }));
    assert.deepEqual(start.Parameters, { action: 'executeStatement', sqlStatement: 'select 1', 'executionArn.$': '$$.Execution.Id' });
    const page = stateJson(stack, new RedshiftStatementCall(stack, 'Page', {
      tasker, action: 'getStatementResult', nextToken: sfn.JsonPath.stringAt('$.next'),
    }));
    assert.equal(page.Parameters['nextToken.$'], '$.next');
  });
  test('refusals', () => {
    const { stack, tasker } = withTasker();
    assert.throws(() => new RedshiftStatementCall(stack, 'A', { tasker, action: 'executeStatement' }),
      /sqlStatement goes with executeStatement/);
    assert.throws(() => new RedshiftStatementCall(stack, 'B', { tasker, action: 'describeStatement', sqlStatement: 'x' }),
      /sqlStatement goes with executeStatement/);
    assert.throws(() => new RedshiftStatementCall(stack, 'C', { tasker, action: 'cancelStatement', nextToken: 't' }),
      /nextToken goes with getStatementResult only/);
  });
});

describe('custom resources', () => {
  test('Custom::RedshiftSql with the tasker as ServiceToken', () => {
    const { stack, tasker } = withTasker();
    new RedshiftSql(stack, 'Schema', {
      tasker,
      createSql: 'create schema if not exists reporting',
      deleteSql: ['drop schema if exists reporting cascade'],
      serviceTimeout: Duration.minutes(10),
    });
    assert.throws(() => new RedshiftSql(stack, 'Empty', { tasker, createSql: [] }), /CreateSql takes 1 to 40 statements/);
    assert.throws(() => new RedshiftSql(stack, 'Long', { tasker, serviceTimeout: Duration.hours(2) }), /1 hour/);
    const resource = onlyResource(stack, 'Custom::RedshiftSql');
    assert.deepEqual(resource.Properties.ServiceToken, { 'Fn::GetAtt': [stack.getLogicalId(tasker.lambdaFunction.node.defaultChild as any), 'Arn'] });
    assert.equal(resource.Properties.CreateSql, 'create schema if not exists reporting');
    assert.deepEqual(resource.Properties.DeleteSql, ['drop schema if exists reporting cascade']);
    assert.equal(resource.Properties.UpdateSql, undefined);
    assert.equal(resource.Properties.ServiceTimeout, '600');
  });
  test('Custom::RedshiftUser with the seed\'s property names, and Username', () => {
    const { stack } = withTasker();
    const user = new RedshiftUser(stack, 'Etl', {
      tasker: 'arn:aws:lambda:us-east-1:123456789012:function:tasker',
      username: 'etl_user',
      passwordHash: 'md5' + '0'.repeat(32),
      createDb: true,
      groups: ['loaders'],
      validUntil: '2030-01-01',
      connectionLimit: 'UNLIMITED',
      sessionTimeout: Duration.hours(1),
    });
    const username = stack.resolve(user.username);
    const resource = onlyResource(stack, 'Custom::RedshiftUser');
    assert.deepEqual(resource.Properties, {
      ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:tasker',
      username: 'etl_user',
      password: 'md5' + '0'.repeat(32),
      create_db: true,
      groups: ['loaders'],
      valid_until: '2030-01-01',
      connection_limit: 'UNLIMITED',
      session_timeout: 3600,
    });
    assert.deepEqual(username, { 'Fn::GetAtt': [stack.getLogicalId(user.resource.node.defaultChild as any), 'Username'] });
  });
  test('RedshiftUser refusals never repeat a password', () => {
    const { stack } = withTasker();
    const token = 'arn:aws:lambda:us-east-1:123456789012:function:tasker';
    assert.throws(() => new RedshiftUser(stack, 'A', { tasker: token, username: 'Bad-Name' }), /lowercase letters, digits/);
    assert.throws(() => new RedshiftUser(stack, 'B', { tasker: token, username: 'u', passwordHash: 'hunter2secret' }),
      (error: Error) => /passwordHash must be md5/.test(error.message) && !error.message.includes('hunter2secret'));
    assert.throws(() => new RedshiftUser(stack, 'C', { tasker: token, username: 'u', validUntil: '2030-01-01' }),
      /validUntil needs a passwordHash/);
    assert.throws(() => new RedshiftUser(stack, 'D', { tasker: token, username: 'u', sessionTimeout: Duration.seconds(5) }),
      /sessionTimeout must be from 60 seconds to 20 days/);
    assert.throws(() => new RedshiftUser(stack, 'E', { tasker: token, username: 'u', connectionLimit: -1 }),
      /connectionLimit must be a whole number/);
  });
});
