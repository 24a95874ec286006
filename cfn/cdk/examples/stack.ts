// The seed's example state machines (single success, single failure, success and fail, parallel
// without concurrency, cancelling, polling) written with this package's helpers, beside an
// SfnRedshiftTasker as the seed's README sets one up. The SQL is PostgreSQL-compatible so that
// the local stack can run it; on Redshift use queries of your own where the comments say so.
import { CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { RedshiftSqlTask, RedshiftStatementCall, SfnRedshiftTasker, TaskerErrors } from '../src';

export interface ExamplesStackProps extends StackProps {
  readonly clusterIdentifier: string;
  readonly dbName: string;
  readonly dbUser: string;
  /** The tasker's code; default the zip bundled in the package. */
  readonly code?: lambda.Code;
  /** A statement that runs long enough to be cancelled (pg_sleep is PostgreSQL's). */
  readonly longRunningSql?: string;
  /** A statement that runs a few seconds (polling). */
  readonly slowSql?: string;
  /**
   * A statement that runs a few seconds, started as a singleton by both branches of
   * parallel_no_concurrency. Keep it different from slowSql: a singleton is refused while any
   * statement with the same SQL runs on the target, whoever started it.
   */
  readonly singletonSql?: string;
  /** The reconcile schedule (off in the local stack, whose moto runs no schedules). */
  readonly enableReconcile?: boolean;
}

export class ExamplesStack extends Stack {
  public readonly tasker: SfnRedshiftTasker;
  public readonly machines: Record<string, sfn.StateMachine> = {};

  constructor(scope: Construct, id: string, props: ExamplesStackProps) {
    super(scope, id, props);
    // As the seed's README: the target's cluster, database and user.
    this.tasker = new SfnRedshiftTasker(this, 'Tasker', {
      redshiftTargetProps: { clusterIdentifier: props.clusterIdentifier, dbName: props.dbName, dbUser: props.dbUser },
      code: props.code,
      enableReconcile: props.enableReconcile,
    });
    const tasker = this.tasker;
    const longRunningSql = props.longRunningSql ?? 'select pg_sleep(600)';
    const slowSql = props.slowSql ?? 'select pg_sleep(5)';
    const singletonSql = props.singletonSql ?? 'select pg_sleep(5) as singleton_example';

    // single_success: one statement, completed by the tasker's callback.
    {
      const scope = new Construct(this, 'SingleSuccessStates');
      const run = new RedshiftSqlTask(scope, 'RunSql', {
        tasker,
        sqlStatement: 'select 1 as one',
        resultPath: '$.statement',
        onSqlFailure: new sfn.Fail(scope, 'SqlFailed', { error: 'SqlFailed', cause: 'the SQL failed on Redshift' }),
      });
      run.addCatch(
        new sfn.Fail(scope, 'TimedOut', { error: 'TimedOut', cause: 'the statement ran longer than HeartbeatSeconds' }),
        { errors: [sfn.Errors.TIMEOUT], resultPath: '$.error' },
      );
      run.addCatch(
        new sfn.Fail(scope, 'OtherFailure', { error: 'OtherFailure', cause: 'the tasker could not run the statement' }),
        { errors: [sfn.Errors.ALL], resultPath: '$.error' },
      );
      this.machine('SingleSuccess', run.next(new sfn.Succeed(scope, 'Succeeded')));
    }

    // single_failure: the SQL fails, FAILED is caught and the failure described.
    {
      const scope = new Construct(this, 'SingleFailureStates');
      const describe = new RedshiftStatementCall(scope, 'DescribeFailure', {
        tasker,
        action: 'describeStatement',
        resultSelector: { 'Status.$': '$.Status', 'Error.$': '$.Error' },
        resultPath: '$.statement',
      }).next(new sfn.Succeed(scope, 'FailureHandled'));
      const run = new RedshiftSqlTask(scope, 'RunFailingSql', {
        tasker,
        sqlStatement: 'select * from rstasker_example_table_that_does_not_exist',
        onSqlFailure: describe,
      });
      this.machine('SingleFailure', run.next(unexpectedSuccess(scope, 'the failing SQL succeeded')));
    }

    // success_and_fail: a statement that succeeds, then one that fails.
    {
      const scope = new Construct(this, 'SuccessAndFailStates');
      const first = new RedshiftSqlTask(scope, 'First', { tasker, sqlStatement: 'select 1 as one', resultPath: '$.first' });
      const second = new RedshiftSqlTask(scope, 'Second', {
        tasker,
        sqlStatement: 'select 1 / 0 as division_by_zero',
        resultPath: '$.second',
        onSqlFailure: new sfn.Succeed(scope, 'SecondFailed'),
      });
      this.machine('SuccessAndFail', first.next(second).next(unexpectedSuccess(scope, 'the second statement should have failed')));
    }

    // parallel_no_concurrency: the same singleton statement twice at once; one runs, one is refused.
    {
      const scope = new Construct(this, 'ParallelNoConcurrencyStates');
      const both = new sfn.Parallel(scope, 'Both');
      for (const branch of ['A', 'B']) {
        const run = new RedshiftSqlTask(scope, `Run${branch}`, { tasker, sqlStatement: singletonSql, singleton: true });
        run.addCatch(new sfn.Pass(scope, `Refused${branch}`, { result: sfn.Result.fromString('refused') }), {
          errors: [TaskerErrors.CONCURRENT_EXECUTION],
        });
        both.branch(run.next(new sfn.Pass(scope, `Ran${branch}`, { result: sfn.Result.fromString('ran') })));
      }
      this.machine('ParallelNoConcurrency', both.next(new sfn.Succeed(scope, 'Done')));
    }

    // cancelling_statement: the heartbeat expires, the statement is cancelled and ends ABORTED
    // (Redshift cancels asynchronously, hence the describe loop).
    {
      const scope = new Construct(this, 'CancellingStatementStates');
      const waitForAbort = new sfn.Wait(scope, 'WaitForAbort', { time: sfn.WaitTime.duration(Duration.seconds(1)) });
      const describe = new RedshiftStatementCall(scope, 'Describe', {
        tasker,
        action: 'describeStatement',
        resultSelector: { 'Status.$': '$.Status' },
        resultPath: '$.statement',
      });
      const notCancelled = new sfn.Fail(scope, 'NotCancelled', {
        error: 'NotCancelled',
        cause: 'the statement ended before the cancel took effect',
      });
      const isAborted = new sfn.Choice(scope, 'IsAborted')
        .when(sfn.Condition.stringEquals('$.statement.Status', 'ABORTED'), new sfn.Succeed(scope, 'Cancelled'))
        .when(sfn.Condition.stringEquals('$.statement.Status', 'FINISHED'), notCancelled)
        .when(sfn.Condition.stringEquals('$.statement.Status', 'FAILED'), notCancelled)
        .otherwise(waitForAbort);
      const cancel = new RedshiftStatementCall(scope, 'Cancel', {
        tasker,
        action: 'cancelStatement',
        resultSelector: { 'Status.$': '$.Status' },
        resultPath: '$.cancel',
      });
      cancel.next(waitForAbort).next(describe).next(isAborted);
      const long = new RedshiftSqlTask(scope, 'LongSql', {
        tasker,
        sqlStatement: longRunningSql,
        heartbeat: Duration.seconds(5),
      });
      long.addCatch(cancel, { errors: [sfn.Errors.TIMEOUT], resultPath: '$.error' });
      this.machine('CancellingStatement', long.next(unexpectedSuccess(scope, 'the long statement finished within HeartbeatSeconds')));
    }

    // polling: no callback; start the statement, then describe it until it finishes.
    {
      const scope = new Construct(this, 'PollingStates');
      const start = new RedshiftStatementCall(scope, 'Start', {
        tasker,
        action: 'executeStatement',
        sqlStatement: slowSql,
        resultSelector: { 'Id.$': '$.Id' },
        resultPath: '$.started',
      });
      const wait = new sfn.Wait(scope, 'Wait', { time: sfn.WaitTime.duration(Duration.seconds(2)) });
      const describe = new RedshiftStatementCall(scope, 'Describe', {
        tasker,
        action: 'describeStatement',
        resultSelector: { 'Id.$': '$.Id', 'Status.$': '$.Status' },
        resultPath: '$.statement',
      });
      const failed = new sfn.Fail(scope, 'Failed', { error: 'SqlFailed', cause: 'the polled statement did not finish' });
      const isFinished = new sfn.Choice(scope, 'IsFinished')
        .when(sfn.Condition.stringEquals('$.statement.Status', 'FINISHED'), new sfn.Succeed(scope, 'Done'))
        .when(sfn.Condition.stringEquals('$.statement.Status', 'FAILED'), failed)
        .when(sfn.Condition.stringEquals('$.statement.Status', 'ABORTED'), failed)
        .otherwise(wait);
      this.machine('Polling', start.next(wait).next(describe).next(isFinished));
    }

    new CfnOutput(this, 'FunctionArn', { value: tasker.lambdaFunction.functionArn });
  }

  private machine(name: string, definition: sfn.IChainable): void {
    const machine = new sfn.StateMachine(this, name, {
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      comment: `${name}: a seed example (see cfn/cdk/examples)`,
    });
    this.machines[name] = machine;
    new CfnOutput(this, `${name}Arn`, { value: machine.stateMachineArn });
  }
}

function unexpectedSuccess(scope: Construct, cause: string): sfn.Fail {
  return new sfn.Fail(scope, 'UnexpectedSuccess', { error: 'UnexpectedSuccess', cause });
}
