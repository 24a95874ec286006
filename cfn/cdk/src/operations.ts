// The tasker's alarms and dashboard, the same as cfn/tasker.yaml's (DeadLetterQueueAlarm, ...,
// Dashboard): what an operator watches, built from the function, its queues and metrics namespace.
import { Fn, Lazy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** What the alarms and the dashboard watch. */
export interface Watched {
  readonly fn: lambda.IFunction;
  readonly queue?: sqs.IQueue;
  readonly deadLetterQueue?: sqs.IQueue;
  /** The function's CloudWatch metrics namespace (METRICS_NAMESPACE). */
  readonly namespace: string;
  /** The function's log group name (the dashboard's log query reads it). */
  readonly logGroupName: string;
}

interface AlarmSpec {
  id: string;
  description: string;
  namespace: string;
  metricName: string;
  dimension: { name: string; value: string };
  statistic: 'Maximum' | 'Sum';
  threshold: number;
}

/** One alarm per failure an operator must act on, each notifying `topicArn` on alarm and on recovery. */
export function createAlarms(scope: Construct, watched: Watched, topicArn: string): cloudwatch.CfnAlarm[] {
  const fnDimension = { name: 'FunctionName', value: watched.fn.functionName };
  const specs: AlarmSpec[] = [];
  if (watched.deadLetterQueue) {
    specs.push({
      id: 'DeadLetterQueueAlarm',
      description:
        'Completion events reached the dead-letter queue: their waiters were not called back. ' +
        'Inspect the messages, then redrive them to the completion queue.',
      namespace: 'AWS/SQS',
      metricName: 'ApproximateNumberOfMessagesVisible',
      dimension: { name: 'QueueName', value: watched.deadLetterQueue.queueName },
      statistic: 'Maximum',
      threshold: 0,
    });
  }
  if (watched.queue) {
    specs.push({
      id: 'CompletionQueueAgeAlarm',
      description:
        'The oldest completion event has waited over 15 minutes: callbacks are late (function ' +
        'errors, throttling, or a disabled event source mapping).',
      namespace: 'AWS/SQS',
      metricName: 'ApproximateAgeOfOldestMessage',
      dimension: { name: 'QueueName', value: watched.queue.queueName },
      statistic: 'Maximum',
      threshold: 900,
    });
  }
  specs.push(
    {
      id: 'FunctionErrorsAlarm',
      description:
        'The function failed invocations (errors it returns to callers count too: look at the ' +
        'errorType field of its log lines).',
      namespace: 'AWS/Lambda',
      metricName: 'Errors',
      dimension: fnDimension,
      statistic: 'Sum',
      threshold: 0,
    },
    {
      id: 'FunctionThrottlesAlarm',
      description: 'Invocations of the function were throttled.',
      namespace: 'AWS/Lambda',
      metricName: 'Throttles',
      dimension: fnDimension,
      statistic: 'Sum',
      threshold: 0,
    },
    {
      id: 'CallbackFailuresAlarm',
      description:
        'Callbacks to Step Functions or CloudFormation failed (they are retried; repeated ' +
        'failures end in the dead-letter queue).',
      namespace: watched.namespace,
      metricName: 'CallbackFailures',
      dimension: fnDimension,
      statistic: 'Sum',
      threshold: 0,
    },
    {
      id: 'ReconcileOutcomeUnknownAlarm',
      description:
        "Reconcile told a waiter its statement's outcome is unknown (the Data API had forgotten " +
        'it): check the database before running the SQL again.',
      namespace: watched.namespace,
      metricName: 'ReconcileOutcomeUnknown',
      dimension: fnDimension,
      statistic: 'Sum',
      threshold: 0,
    },
  );
  return specs.map(
    (spec) =>
      new cloudwatch.CfnAlarm(scope, spec.id, {
        alarmDescription: spec.description,
        namespace: spec.namespace,
        metricName: spec.metricName,
        dimensions: [spec.dimension],
        statistic: spec.statistic,
        period: 300,
        evaluationPeriods: 1,
        threshold: spec.threshold,
        comparisonOperator: 'GreaterThanThreshold',
        treatMissingData: 'notBreaching',
        alarmActions: [topicArn],
        okActions: [topicArn],
      }),
  );
}

/**
 * The dashboard: statements, callbacks and their latency, the queues, errors and reconcile.
 * `name` undefined lets CloudFormation name it (Lazy: decided at synthesis).
 */
export function createDashboard(scope: Construct, watched: Watched, name: () => string | undefined): cloudwatch.CfnDashboard {
  // Placeholders of the Fn::Sub below, as in cfn/tasker.yaml's DashboardBody.
  const ns = '${Ns}';
  const fn = '${Function}';
  const region = '${AWS::Region}';
  const own = (metric: string, ...rest: object[]) => [ns, metric, 'FunctionName', fn, ...rest];
  const widget = (type: string, x: number, y: number, properties: object) => ({
    type, x, y, width: 12, height: 6, properties,
  });
  const queueMetrics: unknown[] = [];
  if (watched.queue) {
    queueMetrics.push(
      ['AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'QueueName', '${CompletionQueueName}'],
      ['AWS/SQS', 'ApproximateAgeOfOldestMessage', 'QueueName', '${CompletionQueueName}', { yAxis: 'right' }],
    );
  }
  if (watched.deadLetterQueue) {
    queueMetrics.push(['AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'QueueName', '${DeadLetterQueueName}']);
  }
  const widgets = [
    widget('metric', 0, 0, {
      title: 'Statements started and completed', region, stat: 'Sum', period: 300,
      metrics: [own('StatementsStarted'), own('StatementsCompleted'), own('StartFailures'), own('SingletonRefused')],
    }),
    widget('metric', 12, 0, {
      title: 'Callbacks by outcome', region, stat: 'Sum', period: 300,
      metrics: [
        [{
          expression:
            `SEARCH('{${ns},FunctionName,Outcome,Waiter} MetricName="CallbacksSent" FunctionName="${fn}"', 'Sum', 300)`,
          id: 'sent',
          label: 'sent',
        }],
        own('CallbackFailures'),
        own('WaiterGone'),
      ],
    }),
    widget('metric', 0, 6, {
      title: 'Callback latency (ms, from the completion event)', region, period: 300,
      metrics: [own('CallbackLatency', { stat: 'p50' }), own('CallbackLatency', { stat: 'p99' })],
    }),
    widget('log', 12, 6, {
      title: "Started and completed over the dashboard's time range (listWaiting lists what waits)", region,
      query:
        "SOURCE '${LogGroup}' | filter ispresent(StatementsStarted) or ispresent(StatementsCompleted) | " +
        'stats sum(StatementsStarted) as started, sum(StatementsCompleted) as completed',
      view: 'table',
    }),
    ...(queueMetrics.length > 0
      ? [widget('metric', 0, 12, {
        title: 'Completion queue and dead-letter queue', region, stat: 'Maximum', period: 300, metrics: queueMetrics,
      })]
      : []),
    widget('metric', 12, 12, {
      title: 'Function errors, throttles, reconcile', region, stat: 'Sum', period: 300,
      metrics: [
        ['AWS/Lambda', 'Errors', 'FunctionName', fn],
        ['AWS/Lambda', 'Throttles', 'FunctionName', fn],
        own('ReconcileCompleted'),
        own('ReconcileOutcomeUnknown'),
        own('DuplicateEvents'),
        own('ForeignEvents'),
      ],
    }),
  ];
  const variables: Record<string, string> = {
    Ns: watched.namespace,
    Function: watched.fn.functionName,
    LogGroup: watched.logGroupName,
  };
  if (watched.queue) variables.CompletionQueueName = watched.queue.queueName;
  if (watched.deadLetterQueue) variables.DeadLetterQueueName = watched.deadLetterQueue.queueName;
  return new cloudwatch.CfnDashboard(scope, 'Dashboard', {
    dashboardName: Lazy.string({ produce: name }),
    dashboardBody: Fn.sub(JSON.stringify({ widgets }), variables),
  });
}
