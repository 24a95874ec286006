// SfnRedshiftTasker: the resources of cfn/tasker.yaml as a CDK construct, with the props of the
// seed construct (cdk-stepfunctions-redshift) under their old names.
import { Annotations, ArnFormat, Duration, Fn, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { bundledCode } from './code';
import { createAlarms, createDashboard } from './operations';

/** The Redshift target the tasker runs SQL on: a provisioned cluster or a serverless workgroup. */
export interface RedshiftTargetProps {
  /** Provisioned cluster (give this or `workgroupName`). */
  readonly clusterIdentifier?: string;
  /** Redshift Serverless workgroup (give this or `clusterIdentifier`). */
  readonly workgroupName?: string;
  /**
   * Id (a UUID) of the workgroup, to scope the role's permissions to it; without it every
   * workgroup of the account and region is allowed (IAM names workgroups by id, the Data API by name).
   */
  readonly workgroupId?: string;
  /** Database the SQL runs in. */
  readonly dbName: string;
  /** Database user for temporary credentials; a cluster needs this or `secretArn`. */
  readonly dbUser?: string;
  /** Secrets Manager secret with the database credentials (instead of `dbUser`). */
  readonly secretArn?: string;
}

/** The seed's table permissions; the tasker always needs to read and write its table. */
export type TablePermissions = 'All' | 'ReadWrite' | 'Read' | 'Write';

/** Function settings the tasker lets a caller change (the seed's starterLambdaFunctionProps). */
export interface TaskerFunctionProps extends Partial<lambda.FunctionProps> {}

export interface SfnRedshiftTaskerProps {
  /** The Redshift target. */
  readonly redshiftTargetProps: RedshiftTargetProps;

  /** A table to use instead of creating one (it needs the key schema and the `waiting-index`). */
  readonly existingTableObj?: dynamodb.ITable;
  /** Overrides of the created table's properties (key schema and index are the tasker's). */
  readonly dynamoTableProps?: Partial<dynamodb.TableProps>;
  /** Accepted for the seed's sake: 'ReadWrite' (default) or 'All'; the role gets exactly what the tasker uses. */
  readonly tablePermissions?: TablePermissions;

  /**
   * false: no completion rule, queue or reconcile schedule of its own; the tasker shares the
   * `existingTableObj` of a first tasker, whose queue and function complete its statements
   * (the seed's way to serve several clusters or users). Default true.
   */
  readonly createCallbackInfra?: boolean;

  /** TRACE, DEBUG, INFO (default), WARN or ERROR; the seed's WARNING and CRITICAL are mapped to WARN and ERROR. */
  readonly logLevel?: string;

  /** A queue for the completion events instead of creating one. */
  readonly existingQueueObj?: sqs.IQueue;
  /** Overrides of the completion queue's properties. */
  readonly queueProps?: Partial<sqs.QueueProps>;
  /** Whether the completion queue has a dead-letter queue (default true). */
  readonly deployDeadLetterQueue?: boolean;
  /** Overrides of the dead-letter queue's properties. */
  readonly deadLetterQueueProps?: Partial<sqs.QueueProps>;
  /** Deliveries of a completion event before it moves to the dead-letter queue (default 5). */
  readonly maxReceiveCount?: number;
  /** The seed purged its queue on demand; nothing here needs that. Accepted and ignored. */
  readonly enableQueuePurging?: boolean;

  /** Encrypt the table and queues with a customer-managed KMS key (default true). */
  readonly enableEncryptionWithCustomerManagedKey?: boolean;
  /** The key to use instead of creating one (its policy must let EventBridge use it). */
  readonly encryptionKey?: kms.IKey;
  /** Overrides of the created key's properties. */
  readonly encryptionKeyProps?: Partial<kms.KeyProps>;

  /** The function's settings: memory, timeout, architecture, extra environment, ... */
  readonly starterLambdaFunctionProps?: TaskerFunctionProps;
  /** The seed's second (completer) function: refused, the tasker has one function. */
  readonly completerLambdaFunctionProps?: unknown;

  /** The Lambda code; default the zip bundled in this package for the function's architecture. */
  readonly code?: lambda.Code;
  /** Days a statement's state is kept in the table (default 7). */
  readonly ttlDays?: number;
  /** Schedule of the reconcile for lost completion events (default every 5 minutes). */
  readonly reconcileSchedule?: events.Schedule;
  /** Whether to create the reconcile schedule (default true, with callback infrastructure). */
  readonly enableReconcile?: boolean;
  /** Statements waiting longer than this are examined by reconcile (default 15 minutes). */
  readonly reconcileAfter?: Duration;
  /** How long the function's logs are kept (default one month). */
  readonly logRetention?: logs.RetentionDays;

  /** CloudWatch namespace of the function's metrics (METRICS_NAMESPACE; default RedshiftTasker). */
  readonly metricsNamespace?: string;
  /**
   * SNS topic the alarms notify (on alarm and on recovery): dead-letter queue not empty, old
   * completion messages, function errors and throttles, failed callbacks, outcomes reconcile could
   * not learn. Without it no alarm is created.
   */
  readonly alarmTopic?: sns.ITopic;
  /** AWS X-Ray tracing of the function: ACTIVE (with the role's X-Ray permissions) or PASS_THROUGH (default). */
  readonly tracing?: lambda.Tracing;
  /** Level of Lambda's own log lines (default INFO, which keeps each invocation's REPORT line). */
  readonly systemLogLevel?: lambda.SystemLogLevel;
  /**
   * Name of the dashboard; default `<stack name>-redshift-tasker` when the stack holds one
   * SfnRedshiftTasker, else a name CloudFormation generates.
   */
  readonly dashboardName?: string;
}

const LOG_LEVELS: Record<string, lambda.ApplicationLogLevel> = {
  TRACE: lambda.ApplicationLogLevel.TRACE,
  DEBUG: lambda.ApplicationLogLevel.DEBUG,
  INFO: lambda.ApplicationLogLevel.INFO,
  WARN: lambda.ApplicationLogLevel.WARN,
  WARNING: lambda.ApplicationLogLevel.WARN,
  ERROR: lambda.ApplicationLogLevel.ERROR,
  CRITICAL: lambda.ApplicationLogLevel.ERROR,
};

// Lambda settings the tasker owns; each refusal says what to do instead.
const OWNED_FUNCTION_PROPS: Record<string, string> = {
  runtime: 'the tasker is a native binary on provided.al2023; leave runtime out',
  handler: 'the tasker is a native binary started by its bootstrap; leave handler out',
  role: 'the tasker builds a least-privilege role; add statements with tasker.lambdaFunction.addToRolePolicy()',
  logGroup: 'the tasker creates its log group; set logRetention instead',
  loggingFormat: 'the tasker logs JSON; leave loggingFormat out',
  applicationLogLevelV2: 'use the logLevel prop',
  applicationLogLevel: 'use the logLevel prop',
  systemLogLevelV2: 'use the systemLogLevel prop of SfnRedshiftTasker',
  systemLogLevel: 'use the systemLogLevel prop of SfnRedshiftTasker',
  tracing: 'use the tracing prop of SfnRedshiftTasker (it also grants the X-Ray permissions)',
  logFormat: 'the tasker logs JSON; leave logFormat out',
  logRetention: 'the tasker creates its log group; use the logRetention prop of SfnRedshiftTasker',
};

// The waiting index, as state_table_definition() in src/tasker/state_table.cpp defines it.
const WAITING_INDEX = 'waiting-index';

/** The seed's construct, reimplemented on redshift-tasker: one function, its table, queue and key. */
export class SfnRedshiftTasker extends Construct {
  /** The tasker function: state machines invoke it; custom resources use its ARN as ServiceToken. */
  public readonly lambdaFunction: lambda.Function;
  /** The state table (created, or the `existingTableObj`). */
  public readonly trackingTable: dynamodb.ITable;
  /** The completion queue (absent with `createCallbackInfra: false`). */
  public readonly queue?: sqs.IQueue;
  /** The completion queue's dead-letter queue (when one is deployed). */
  public readonly deadLetterQueue?: sqs.IQueue;
  /** The key encrypting table and queues (absent without customer-managed encryption). */
  public readonly key?: kms.IKey;
  /** The function's role (with createCallbackInfra: false, the first tasker's). */
  public readonly role: iam.Role;
  /** The function's log group. */
  public readonly logGroup: logs.LogGroup;
  /** The dashboard of the tasker's metrics, queues and function. */
  public readonly dashboard: cloudwatch.CfnDashboard;
  /** The alarms (empty without `alarmTopic`). */
  public readonly alarms: cloudwatch.CfnAlarm[];

  constructor(scope: Construct, id: string, props: SfnRedshiftTaskerProps) {
    super(scope, id);
    const target = checkTarget(props.redshiftTargetProps);
    const fnProps: TaskerFunctionProps = props.starterLambdaFunctionProps ?? {};
    refuseOwnedFunctionProps(fnProps);
    if (props.completerLambdaFunctionProps !== undefined) {
      throw new Error(
        'SfnRedshiftTasker: completerLambdaFunctionProps no longer applies: one function starts statements ' +
          'and completes them. Put its settings in starterLambdaFunctionProps.',
      );
    }
    const permissions = props.tablePermissions ?? 'ReadWrite';
    if (permissions !== 'ReadWrite' && permissions !== 'All') {
      throw new Error(
        `SfnRedshiftTasker: tablePermissions '${permissions}' would break the tasker, which reads and writes ` +
          'its table; leave tablePermissions out (the role gets exactly the table actions it uses).',
      );
    }
    const logLevel = LOG_LEVELS[(props.logLevel ?? 'INFO').toUpperCase()];
    if (!logLevel) {
      throw new Error(
        `SfnRedshiftTasker: logLevel '${props.logLevel}' is not one of TRACE, DEBUG, INFO, WARN, ERROR.`,
      );
    }
    const metricsNamespace = props.metricsNamespace ?? 'RedshiftTasker';
    if (!Token.isUnresolved(metricsNamespace) && !/^(?!AWS\/)[ -~]{1,255}$/.test(metricsNamespace)) {
      throw new Error(
        `SfnRedshiftTasker: metricsNamespace '${metricsNamespace}' must be 1 to 255 printable ASCII characters ` +
          'not starting with AWS/ (CloudWatch reserves those).',
      );
    }
    const tracing = props.tracing ?? lambda.Tracing.PASS_THROUGH;
    if (tracing === lambda.Tracing.DISABLED) {
      throw new Error('SfnRedshiftTasker: tracing is ACTIVE or PASS_THROUGH (the default).');
    }
    if (props.enableQueuePurging) {
      Annotations.of(this).addInfo(
        'enableQueuePurging is ignored: redshift-tasker never purges its queue (duplicates and lost events are handled).',
      );
    }
    const callbackInfra = props.createCallbackInfra ?? true;
    if (!callbackInfra) {
      if (!props.existingTableObj) {
        throw new Error(
          'SfnRedshiftTasker: createCallbackInfra: false shares the table of a first tasker; pass that ' +
            "tasker's table as existingTableObj (firstTasker.trackingTable).",
        );
      }
      for (const name of ['existingQueueObj', 'queueProps', 'deadLetterQueueProps', 'reconcileSchedule'] as const) {
        if (props[name] !== undefined) {
          throw new Error(
            `SfnRedshiftTasker: ${name} needs createCallbackInfra (this tasker has no queue or schedule ` +
              'of its own: the first tasker completes its statements); leave it out.',
          );
        }
      }
    }
    if (props.existingTableObj && props.dynamoTableProps) {
      throw new Error('SfnRedshiftTasker: give existingTableObj or dynamoTableProps, not both.');
    }
    if (props.existingQueueObj && (props.queueProps || props.deadLetterQueueProps)) {
      throw new Error(
        'SfnRedshiftTasker: existingQueueObj is used as it is; leave queueProps and deadLetterQueueProps out.',
      );
    }
    const maxReceiveCount = props.maxReceiveCount ?? 5;
    if (!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1 || maxReceiveCount > 1000) {
      throw new Error(`SfnRedshiftTasker: maxReceiveCount must be a whole number from 1 to 1000, not ${maxReceiveCount}.`);
    }
    const ttlDays = props.ttlDays ?? 7;
    if (!Number.isInteger(ttlDays) || ttlDays < 1 || ttlDays > 3650) {
      throw new Error(`SfnRedshiftTasker: ttlDays must be a whole number from 1 to 3650, not ${ttlDays}.`);
    }
    const reconcileAfter = (props.reconcileAfter ?? Duration.minutes(15)).toSeconds();
    if (reconcileAfter < 1 || reconcileAfter > 86400) {
      throw new Error('SfnRedshiftTasker: reconcileAfter must be from 1 second to 1 day.');
    }
    const timeout = fnProps.timeout ?? Duration.seconds(60);
    if (timeout.toSeconds() > 900) {
      throw new Error('SfnRedshiftTasker: the function timeout cannot exceed 15 minutes (Lambda\'s limit).');
    }
    if (fnProps.reservedConcurrentExecutions === 1) {
      throw new Error(
        'SfnRedshiftTasker: a reserved concurrency of 1 throttles Step Functions and the completion queue ' +
          '(the singleton lock does not need it); leave it out or use at least 2.',
      );
    }
    if (props.encryptionKey && props.enableEncryptionWithCustomerManagedKey === false) {
      throw new Error(
        'SfnRedshiftTasker: encryptionKey needs enableEncryptionWithCustomerManagedKey (leave that out or true).',
      );
    }
    if (props.encryptionKeyProps && (props.encryptionKey || props.enableEncryptionWithCustomerManagedKey === false)) {
      throw new Error(
        'SfnRedshiftTasker: encryptionKeyProps configures the key the tasker creates; it has no effect with ' +
          'encryptionKey or without customer-managed encryption. Leave it out.',
      );
    }

    const stack = Stack.of(this);
    // The key encrypts what this tasker creates: with neither a table nor a queue of its own it
    // needs none.
    const createsEncrypted = !props.existingTableObj || (callbackInfra && !props.existingQueueObj);
    const useKey = (props.enableEncryptionWithCustomerManagedKey ?? true) && createsEncrypted;
    let key: kms.IKey | undefined;
    if (useKey) {
      key = props.encryptionKey ?? this.createKey(props.encryptionKeyProps);
      if (props.encryptionKey && callbackInfra) {
        const added = key.addToResourcePolicy(eventBridgeKeyStatement(stack), true);
        if (!added.statementAdded) {
          Annotations.of(this).addWarning(
            'encryptionKey is imported: its key policy must allow events.amazonaws.com kms:GenerateDataKey* and ' +
              'kms:Decrypt, or EventBridge cannot deliver completion events to the encrypted queue.',
          );
        }
      }
    }
    this.key = key;

    // Who waits for which statement, singleton locks, and the sparse index of waiting statements.
    let table: dynamodb.ITable;
    if (props.existingTableObj) {
      table = props.existingTableObj;
    } else {
      const created = new dynamodb.Table(this, 'StateTable', {
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        removalPolicy: RemovalPolicy.DESTROY,
        ...(key
          ? { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: key }
          : { encryption: dynamodb.TableEncryption.AWS_MANAGED }),
        ...props.dynamoTableProps,
        partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
        sortKey: { name: 'invocationId', type: dynamodb.AttributeType.STRING },
        timeToLiveAttribute: 'TTL',
      });
      created.addGlobalSecondaryIndex({
        indexName: WAITING_INDEX,
        partitionKey: { name: 'waiting', type: dynamodb.AttributeType.STRING },
        sortKey: { name: 'waitingSince', type: dynamodb.AttributeType.NUMBER },
        projectionType: dynamodb.ProjectionType.ALL,
      });
      table = created;
    }
    this.trackingTable = table;

    // Completion events on their way to the function.
    let queue: sqs.IQueue | undefined;
    let deadLetterQueue: sqs.IQueue | undefined;
    if (callbackInfra) {
      if (props.existingQueueObj) {
        queue = props.existingQueueObj;
      } else {
        if (props.deployDeadLetterQueue ?? true) {
          deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
            retentionPeriod: Duration.days(14),
            removalPolicy: RemovalPolicy.DESTROY,
            ...queueEncryption(key),
            ...props.deadLetterQueueProps,
          });
        } else if (props.deadLetterQueueProps) {
          throw new Error(
            'SfnRedshiftTasker: deadLetterQueueProps needs deployDeadLetterQueue (leave that out or true).',
          );
        }
        queue = new sqs.Queue(this, 'CompletionQueue', {
          // Six times the function timeout, as Lambda recommends for SQS event sources.
          visibilityTimeout: Duration.seconds(6 * timeout.toSeconds()),
          retentionPeriod: Duration.days(4),
          removalPolicy: RemovalPolicy.DESTROY,
          ...queueEncryption(key),
          ...(deadLetterQueue ? { deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount } } : {}),
          ...props.queueProps,
        });
      }
    }
    this.queue = queue;
    this.deadLetterQueue = deadLetterQueue;

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const statements = this.functionStatements(stack, target, table, key, queue);
    // A tasker without callback infrastructure runs as the role of the tasker whose table it
    // shares: that tasker's function completes and reconciles its statements, and the Data API
    // shows a caller only the statements its own role started.
    const primary = callbackInfra ? undefined : taskerOwning(table);
    if (primary) {
      this.role = primary.role;
      new iam.Policy(this, 'TargetPolicy', {
        roles: [primary.role],
        statements: statements.filter((s) => SECONDARY_SIDS.has(s.sid ?? '')),
      });
    } else {
      if (!callbackInfra) {
        Annotations.of(this).addWarning(
          'existingTableObj is not the trackingTable of an SfnRedshiftTasker in this app: the tasker that ' +
            "completes this one's statements must run as this function's role to describe failed ones " +
            '(the Data API shows a caller only its own statements).',
        );
      }
      this.role = new iam.Role(this, 'FunctionRole', {
        description: 'redshift-tasker function (least privilege)',
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        inlinePolicies: { 'redshift-tasker': new iam.PolicyDocument({ statements }) },
      });
    }

    const architecture = fnProps.architecture ?? lambda.Architecture.X86_64;
    const code = props.code ?? fnProps.code ?? bundledCode(architecture);
    this.lambdaFunction = new lambda.Function(this, 'Function', {
      description: 'redshift-tasker (Redshift Data API callbacks for Step Functions and CloudFormation)',
      memorySize: 256,
      ...fnProps,
      runtime: lambda.Runtime.PROVIDED_AL2023,
      handler: 'bootstrap',
      code,
      architecture,
      timeout,
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: logLevel,
      systemLogLevelV2: props.systemLogLevel ?? lambda.SystemLogLevel.INFO,
      environment: {
        ...fnProps.environment,
        // Empty values mean "not set" (the function treats them as absent).
        CLUSTER_IDENTIFIER: target.clusterIdentifier ?? '',
        WORKGROUP_NAME: target.workgroupName ?? '',
        DATABASE: target.dbName,
        DB_USER: target.dbUser ?? '',
        SECRET_ARN: target.secretArn ?? '',
        DDB_TABLE_NAME: table.tableName,
        TTL: String(ttlDays),
        LOG_LEVEL: logLevel,
        RECONCILE_AFTER_SECONDS: String(reconcileAfter),
        METRICS_NAMESPACE: metricsNamespace,
      },
    });
    // Tracing set on the function itself: Function's own `tracing` would add the X-Ray actions
    // as a separate policy; the role gets AWS's managed policy for them instead, as the template.
    (this.lambdaFunction.node.defaultChild as lambda.CfnFunction).tracingConfig = { mode: tracing };
    if (tracing === lambda.Tracing.ACTIVE) {
      this.role.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('AWSXRayDaemonWriteAccess'));
    }

    if (queue) {
      this.connectCompletionEvents(queue);
      if (props.enableReconcile ?? true) {
        const rule = new events.Rule(this, 'ReconcileRule', {
          description: 'Finishes statements whose completion event never arrived.',
          schedule: props.reconcileSchedule ?? events.Schedule.rate(Duration.minutes(5)),
        });
        rule.addTarget(
          new targets.LambdaFunction(this.lambdaFunction, {
            event: events.RuleTargetInput.fromObject({ action: 'reconcile' }),
          }),
        );
        setTargetId(rule, 'reconcile');
      }
    } else if (props.enableReconcile) {
      throw new Error(
        'SfnRedshiftTasker: enableReconcile needs createCallbackInfra: the first tasker reconciles the shared table.',
      );
    }

    const watched = {
      fn: this.lambdaFunction,
      queue,
      deadLetterQueue,
      namespace: metricsNamespace,
      logGroupName: this.logGroup.logGroupName,
    };
    this.alarms = props.alarmTopic ? createAlarms(this, watched, props.alarmTopic.topicArn) : [];
    // Dashboard names are unique per account and region: the template's name only while this is
    // the stack's only tasker (decided at synthesis, when every tasker exists).
    this.dashboard = createDashboard(this, watched, () => {
      if (props.dashboardName !== undefined) return props.dashboardName;
      const taskers = stack.node.findAll().filter((c) => c instanceof SfnRedshiftTasker);
      return taskers.length === 1 ? Fn.sub('${AWS::StackName}-redshift-tasker') : undefined;
    });
  }

  private createKey(overrides?: Partial<kms.KeyProps>): kms.Key {
    const stack = Stack.of(this);
    return new kms.Key(this, 'Key', {
      description: Fn.sub('redshift-tasker (${AWS::StackName}): state table and completion queues'),
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
      policy: new iam.PolicyDocument({
        statements: [
          new iam.PolicyStatement({
            sid: 'AccountAdministersTheKeyThroughIam',
            principals: [new iam.AccountRootPrincipal()],
            actions: ['kms:*'],
            resources: ['*'],
          }),
          eventBridgeKeyStatement(stack),
        ],
      }),
      ...overrides,
    });
  }

  // The rule for "Redshift Data Statement Status Change" events and the queue policy that lets
  // exactly that rule send; then the queue feeds the function, reporting failures per message.
  private connectCompletionEvents(queue: sqs.IQueue): void {
    const rule = new events.Rule(this, 'CompletionRule', {
      description: 'Redshift Data API statement completions, to the redshift-tasker queue.',
      eventPattern: { source: ['aws.redshift-data'], detailType: ['Redshift Data Statement Status Change'] },
    });
    // A plain target: events-targets' SqsQueue would grant more than sqs:SendMessage and edit the key policy.
    rule.addTarget({ bind: () => ({ arn: queue.queueArn }) });
    setTargetId(rule, 'completion-queue');
    const added = queue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CompletionRuleSends',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [queue.queueArn],
        conditions: { ArnEquals: { 'aws:SourceArn': rule.ruleArn } },
      }),
    );
    if (!added.statementAdded) {
      Annotations.of(this).addWarning(
        'existingQueueObj is imported: its queue policy must allow events.amazonaws.com sqs:SendMessage from ' +
          'the completion rule, or no completion event arrives.',
      );
    }
    new lambda.EventSourceMapping(this, 'CompletionEventSource', {
      target: this.lambdaFunction,
      eventSourceArn: queue.queueArn,
      batchSize: 10,
      reportBatchItemFailures: true,
      enabled: true,
    });
  }

  // The role's statements, the same as the FunctionRole policy of cfn/tasker.yaml.
  private functionStatements(
    stack: Stack,
    target: RedshiftTargetProps,
    table: dynamodb.ITable,
    key: kms.IKey | undefined,
    queue: sqs.IQueue | undefined,
  ): iam.PolicyStatement[] {
    const clusterArn = (resource: string, name: string) =>
      stack.formatArn({ service: 'redshift', resource, resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const workgroupArn = stack.formatArn({
      service: 'redshift-serverless',
      resource: 'workgroup',
      resourceName: target.workgroupId ?? '*',
    });
    const targetArn = target.clusterIdentifier ? clusterArn('cluster', target.clusterIdentifier) : workgroupArn;
    let credentials: iam.PolicyStatementProps;
    if (target.secretArn) {
      credentials = { actions: ['secretsmanager:GetSecretValue'], resources: [target.secretArn] };
    } else if (target.clusterIdentifier) {
      credentials = {
        actions: ['redshift:GetClusterCredentials'],
        resources: [
          clusterArn('dbuser', `${target.clusterIdentifier}/${target.dbUser}`),
          clusterArn('dbname', `${target.clusterIdentifier}/${target.dbName}`),
        ],
      };
    } else {
      credentials = { actions: ['redshift-serverless:GetCredentials'], resources: [workgroupArn] };
    }
    const statements = [
      new iam.PolicyStatement({
        sid: 'Logs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
      new iam.PolicyStatement({
        sid: 'StartStatementsOnTheTarget',
        actions: ['redshift-data:ExecuteStatement', 'redshift-data:BatchExecuteStatement'],
        resources: [targetArn],
      }),
      // No resource types: the Data API only shows a caller its own statements.
      new iam.PolicyStatement({
        sid: 'FollowOwnStatements',
        actions: [
          'redshift-data:DescribeStatement',
          'redshift-data:CancelStatement',
          'redshift-data:GetStatementResult',
          'redshift-data:ListStatements',
        ],
        resources: ['*'],
      }),
      new iam.PolicyStatement({ sid: 'DatabaseCredentials', ...credentials }),
      new iam.PolicyStatement({
        sid: 'StateTable',
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query'],
        resources: [table.tableArn, `${table.tableArn}/index/${WAITING_INDEX}`],
      }),
      // Task tokens carry no resource: these actions take no resource type.
      new iam.PolicyStatement({
        sid: 'StepFunctionsCallbacks',
        actions: ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'],
        resources: ['*'],
      }),
    ];
    const keys = [key, table.encryptionKey].filter((k): k is kms.IKey => k !== undefined);
    if (keys.length > 0) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'EncryptionKey',
          actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey', 'kms:DescribeKey'],
          resources: [...new Set(keys.map((k) => k.keyArn))],
        }),
      );
    }
    if (queue) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'CompletionQueue',
          actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes'],
          resources: [queue.queueArn],
        }),
      );
    }
    return statements;
  }
}

// What a tasker sharing another's role adds to it: its log group, its target and its credentials.
const SECONDARY_SIDS = new Set(['Logs', 'StartStatementsOnTheTarget', 'DatabaseCredentials']);

// The SfnRedshiftTasker whose trackingTable `table` is, if any.
function taskerOwning(table: dynamodb.ITable): SfnRedshiftTasker | undefined {
  const owner = table.node.scope;
  return owner instanceof SfnRedshiftTasker && owner.trackingTable === table ? owner : undefined;
}

function eventBridgeKeyStatement(stack: Stack): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'EventBridgeSendsToTheEncryptedQueue',
    principals: [new iam.ServicePrincipal('events.amazonaws.com')],
    actions: ['kms:GenerateDataKey*', 'kms:Decrypt'],
    resources: ['*'],
    conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
  });
}

function queueEncryption(key: kms.IKey | undefined): Partial<sqs.QueueProps> {
  return key
    ? { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: key }
    : { encryption: sqs.QueueEncryption.SQS_MANAGED };
}

// The template's target ids, so the two read the same (CDK numbers them Target0, Target1, ...).
function setTargetId(rule: events.Rule, id: string): void {
  (rule.node.defaultChild as events.CfnRule).addPropertyOverride('Targets.0.Id', id);
}

function refuseOwnedFunctionProps(fnProps: TaskerFunctionProps): void {
  for (const [name, why] of Object.entries(OWNED_FUNCTION_PROPS)) {
    if ((fnProps as Record<string, unknown>)[name] !== undefined) {
      throw new Error(`SfnRedshiftTasker: starterLambdaFunctionProps.${name} is not accepted: ${why}.`);
    }
  }
}

// The same rules as the template's OneTarget assertions, checked at synthesis.
function checkTarget(target: RedshiftTargetProps | undefined): RedshiftTargetProps {
  if (!target) throw new Error('SfnRedshiftTasker: redshiftTargetProps is required.');
  const cluster = !!target.clusterIdentifier;
  const workgroup = !!target.workgroupName;
  if (cluster === workgroup) {
    throw new Error('SfnRedshiftTasker: give exactly one of redshiftTargetProps.clusterIdentifier and workgroupName.');
  }
  if (!target.dbName) throw new Error('SfnRedshiftTasker: redshiftTargetProps.dbName is required.');
  if (target.dbUser && target.secretArn) {
    throw new Error('SfnRedshiftTasker: give redshiftTargetProps.dbUser or secretArn, not both.');
  }
  if (cluster && !target.dbUser && !target.secretArn) {
    throw new Error('SfnRedshiftTasker: a cluster needs redshiftTargetProps.dbUser or secretArn.');
  }
  if (target.workgroupId && !workgroup) {
    throw new Error('SfnRedshiftTasker: redshiftTargetProps.workgroupId needs workgroupName.');
  }
  return target;
}
