// State machine tasks that call the tasker: RedshiftSqlTask (run SQL and wait for the callback,
// with the seed's recommended Retry, HeartbeatSeconds and Catch) and RedshiftStatementCall
// (describe, cancel or read a statement, or start one without waiting).
import { Duration } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { SfnRedshiftTasker } from './tasker';

/** Error names the tasker fails a task with (use them in addCatch). */
export const TaskerErrors = {
  /** The SQL failed (or was cancelled) on Redshift. */
  FAILED: 'FAILED',
  /** executeSingletonStatement: the same SQL is already running. */
  CONCURRENT_EXECUTION: 'ConcurrentExecution',
  /** statementId LATEST, but this execution started no statement. */
  PREVIOUS_EXECUTION_NOT_FOUND: 'PreviousExecutionNotFound',
  /** The payload is malformed (an unknown field, a missing one). */
  INVALID_REQUEST: 'InvalidRequest',
} as const;

/** A Data API named parameter (`:name` in the SQL); the value may be a JsonPath (JsonPath.stringAt). */
export interface SqlParameter {
  readonly name: string;
  readonly value: string;
}

/** Per-call target overrides; absent fields use the tasker's configured target. */
export interface TargetOverrides {
  readonly clusterIdentifier?: string;
  readonly workgroupName?: string;
  readonly database?: string;
  readonly dbUser?: string;
  readonly secretArn?: string;
}

/** The tasker function: an SfnRedshiftTasker or its lambdaFunction (say, imported by ARN). */
export type TaskerRef = SfnRedshiftTasker | lambda.IFunction;

export interface RedshiftSqlTaskProps extends sfn.TaskStateBaseProps {
  readonly tasker: TaskerRef;
  /** One statement (give this or sqlStatements). */
  readonly sqlStatement?: string;
  /** Several statements run as one transaction (1 to 40). */
  readonly sqlStatements?: string[];
  /** executeSingletonStatement: refuse with ConcurrentExecution while the same SQL runs. Default false. */
  readonly singleton?: boolean;
  readonly parameters?: SqlParameter[];
  readonly target?: TargetOverrides;
  /** How long to wait for the statement (HeartbeatSeconds; default 3600). On expiry: States.Timeout. */
  readonly heartbeat?: Duration;
  /**
   * Makes a repeated invocation (a Retry after a Lambda error that hid a success) never run the
   * SQL twice. Default: States.Format('{}:{}:{}', $$.Execution.Id, $$.State.Name,
   * $$.State.EnteredTime), one key per entry into the state; in a Map whose iterations may enter
   * the state in the same millisecond, add $$.Map.Item.Index. false: send none.
   */
  readonly idempotencyKey?: string | false;
  /** Where FAILED (the SQL failed) leads; without it FAILED fails the execution. */
  readonly onSqlFailure?: sfn.IChainable;
  /** ResultPath of the caught error (default '$.error'). */
  readonly errorPath?: string;
}

/** The seed's recommended retries: Lambda service errors gently, throttling aggressively. */
export function addTaskerRetries(task: sfn.TaskStateBase): void {
  task.addRetry({
    errors: ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException'],
    interval: Duration.seconds(2),
    maxAttempts: 6,
    backoffRate: 2,
  });
  task.addRetry({
    errors: ['Lambda.TooManyRequestsException'],
    interval: Duration.seconds(1),
    maxAttempts: 10,
    backoffRate: 1.5,
  });
}

function taskerFunction(tasker: TaskerRef): lambda.IFunction {
  return tasker instanceof SfnRedshiftTasker ? tasker.lambdaFunction : tasker;
}

function targetFields(target: TargetOverrides | undefined): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const [key, value] of Object.entries(target ?? {})) if (value !== undefined) fields[key] = value;
  return fields;
}

/** A `lambda:invoke.waitForTaskToken` task that runs SQL and completes when the SQL does. */
export class RedshiftSqlTask extends tasks.LambdaInvoke {
  constructor(scope: Construct, id: string, props: RedshiftSqlTaskProps) {
    if ((props.sqlStatement === undefined) === (props.sqlStatements === undefined)) {
      throw new Error(`RedshiftSqlTask ${id}: give exactly one of sqlStatement and sqlStatements.`);
    }
    if (props.sqlStatements && (props.sqlStatements.length < 1 || props.sqlStatements.length > 40)) {
      throw new Error(`RedshiftSqlTask ${id}: sqlStatements takes 1 to 40 statements, not ${props.sqlStatements.length}.`);
    }
    if (props.singleton && props.sqlStatements) {
      throw new Error(`RedshiftSqlTask ${id}: a singleton runs one sqlStatement, not sqlStatements.`);
    }
    const heartbeat = props.heartbeat ?? Duration.seconds(3600);
    if (heartbeat.toSeconds() > 24 * 3600) {
      // The Data API stops a statement after 24 hours; a longer wait would only wait.
      throw new Error(`RedshiftSqlTask ${id}: heartbeat cannot exceed 24 hours (the Data API's limit on a statement).`);
    }
    const payload: Record<string, unknown> = {
      action: props.singleton ? 'executeSingletonStatement' : 'executeStatement',
      ...(props.sqlStatement !== undefined ? { sqlStatement: props.sqlStatement } : { sqlStatements: props.sqlStatements }),
      ...(props.parameters ? { parameters: props.parameters.map((p) => ({ name: p.name, value: p.value })) } : {}),
      ...targetFields(props.target),
      taskToken: sfn.JsonPath.taskToken,
      executionArn: sfn.JsonPath.executionId,
    };
    if (props.idempotencyKey !== false) {
      payload.idempotencyKey =
        props.idempotencyKey ??
        sfn.JsonPath.format('{}:{}:{}', sfn.JsonPath.executionId, sfn.JsonPath.stateName, sfn.JsonPath.stateEnteredTime);
    }
    // heartbeat is TaskStateBaseProps' deprecated field under the same name: pass it as heartbeatTimeout.
    const { heartbeat: _heartbeat, ...stateProps } = props;
    super(scope, id, {
      ...stateProps,
      lambdaFunction: taskerFunction(props.tasker),
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: sfn.TaskInput.fromObject(payload),
      heartbeatTimeout: sfn.Timeout.duration(heartbeat),
      retryOnServiceExceptions: false,
    });
    addTaskerRetries(this);
    if (props.onSqlFailure) {
      this.addCatch(props.onSqlFailure, { errors: [TaskerErrors.FAILED], resultPath: props.errorPath ?? '$.error' });
    }
  }
}

/** The tasker's immediate actions: they answer at once, no callback. */
export type StatementAction = 'describeStatement' | 'cancelStatement' | 'getStatementResult' | 'executeStatement';

export interface RedshiftStatementCallProps extends sfn.TaskStateBaseProps {
  readonly tasker: TaskerRef;
  readonly action: StatementAction;
  /** The statement (default 'LATEST': the last one this execution started). */
  readonly statementId?: string;
  /** getStatementResult: the page to read (JsonPath.stringAt of a previous nextToken). */
  readonly nextToken?: string;
  /** executeStatement without waiting (polling): the SQL. */
  readonly sqlStatement?: string;
  readonly target?: TargetOverrides;
}

/**
 * A plain `lambda:invoke` of the tasker whose output is the action's answer (the Data API's
 * response; executeStatement's carries the statement `Id`).
 */
export class RedshiftStatementCall extends tasks.LambdaInvoke {
  constructor(scope: Construct, id: string, props: RedshiftStatementCallProps) {
    const starting = props.action === 'executeStatement';
    if (starting !== (props.sqlStatement !== undefined)) {
      throw new Error(`RedshiftStatementCall ${id}: sqlStatement goes with executeStatement, and only with it.`);
    }
    if (props.nextToken !== undefined && props.action !== 'getStatementResult') {
      throw new Error(`RedshiftStatementCall ${id}: nextToken goes with getStatementResult only.`);
    }
    const payload: Record<string, unknown> = {
      action: props.action,
      ...(starting ? { sqlStatement: props.sqlStatement } : { statementId: props.statementId ?? 'LATEST' }),
      ...(props.nextToken !== undefined ? { nextToken: props.nextToken } : {}),
      ...targetFields(props.target),
      executionArn: sfn.JsonPath.executionId,
    };
    super(scope, id, {
      ...props,
      lambdaFunction: taskerFunction(props.tasker),
      payload: sfn.TaskInput.fromObject(payload),
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
    });
    addTaskerRetries(this);
  }
}
