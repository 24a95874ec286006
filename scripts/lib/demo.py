"""The demo's run (scripts/demo): starts every example state machine and three query-runner
executions on a deployed local stack, waits for them, and prints one table row per execution:
what it shows, the states it went through, and how it ended; then a summary of the metrics the
function wrote during the run (its EMF lines in the local stack's function logs).

Usage: demo.py STATE_DIR   (the local stack's state directory; its env file and stacks/*.env)
       demo.py --query-runner-input   (print the input a run gives the query runner; the e2e
                                       tests start it twice on one database)

Every run names what it creates after its own run id, so the demo can run again on a stack that
was kept (RSTASKER_DEMO_KEEP=1).
"""

import glob
import json
import os
import secrets
import sys
import time

import boto3

TIMEOUT_SECONDS = 180


def read_env(path):
    values = {}
    with open(path, encoding="utf-8") as env_file:
        for line in env_file:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                values[key] = value
    return values


def clients(env):
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    endpoint = env["AWS_ENDPOINT_URL"]
    return session.client("stepfunctions", endpoint_url=endpoint), session.client(
        "lambda", endpoint_url=endpoint
    )


def new_run_id():
    """Names this run's executions and database objects: unique per run."""
    return time.strftime("%H%M%S") + "_" + secrets.token_hex(3)


def query_runner_input(run_id):
    """Three queries; the second fails twice (division by zero, which the runner retries)."""
    sequence = f"demo_attempts_{run_id}"
    attempts = f"select 1 / (case when nextval('{sequence}') >= 3 then 1 else 0 end) as ok"
    return [f"create sequence {sequence}", attempts, "select 3"]


def runs(examples, runner_arn, run_id):
    """(label, what it shows, state machine, input) for every execution of the demo."""
    return [
        ("single_success", "one statement, called back", examples["SINGLE_SUCCESS_ARN"], {}),
        ("single_failure", "SQL error caught as FAILED", examples["SINGLE_FAILURE_ARN"], {}),
        ("success_and_fail", "second statement fails", examples["SUCCESS_AND_FAIL_ARN"], {}),
        (
            "parallel_no_concurrency",
            "singleton: one runs, one refused",
            examples["PARALLEL_NO_CONCURRENCY_ARN"],
            {},
        ),
        (
            "cancelling_statement",
            "heartbeat timeout, then cancel",
            examples["CANCELLING_STATEMENT_ARN"],
            {},
        ),
        ("polling", "no callback: describe until done", examples["POLLING_ARN"], {}),
        ("paging", "2,500 rows read page by page", examples["PAGING_ARN"], {}),
        ("batch", "three statements, one transaction", examples["BATCH_ARN"], {}),
        ("named_parameters", "named :parameters", examples["NAMED_PARAMETERS_ARN"], {}),
        (
            "query_runner",
            "3 queries, 2nd retried twice",
            runner_arn,
            query_runner_input(run_id),
        ),
        (
            "query_runner_no_match",
            "error not matching: no retry",
            runner_arn,
            ["select * from demo_no_such_table"],
        ),
    ]


def wait(sfn, arn, deadline):
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.25)


def path_of(sfn, arn):
    events = []
    token = None
    while True:
        page = sfn.get_execution_history(
            executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    names = [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]
    # Collapse loops ("Wait > Describe > Wait > Describe") into "(Wait > Describe) x2".
    out = []
    i = 0
    while i < len(names):
        for width in (3, 2, 1):
            unit = names[i : i + width]
            repeats = 1
            while names[i + repeats * width : i + (repeats + 1) * width] == unit:
                repeats += 1
            if repeats > 1:
                text = " > ".join(unit)
                out.append(f"({text}) x{repeats}" if width > 1 else f"{text} x{repeats}")
                i += repeats * width
                break
        else:
            out.append(names[i])
            i += 1
    return " > ".join(out)


def outcome_of(described):
    status = described["status"]
    if status == "FAILED":
        return f"FAILED ({described.get('error', '?')})"
    return status


def emf_metrics(log_dir, function_name, since_ms):
    """Sums of every metric (and the values of each millisecond one) in the EMF documents the
    function wrote at or after since_ms, keyed "Name" plus " Dim=Value" for each dimension of the
    document's first dimension set besides FunctionName."""
    sums, values = {}, {}
    for path in glob.glob(os.path.join(log_dir, function_name, "*.log")):
        with open(path, encoding="utf-8", errors="replace") as log:
            for line in log:
                if '"_aws"' not in line:
                    continue
                try:
                    doc = json.loads(line)
                    meta = doc["_aws"]
                    if meta["Timestamp"] < since_ms:
                        continue
                    for directive in meta["CloudWatchMetrics"]:
                        dims = [d for d in directive["Dimensions"][0] if d != "FunctionName"]
                        suffix = "".join(f" {d}={doc[d]}" for d in dims)
                        for metric in directive["Metrics"]:
                            value = doc[metric["Name"]]
                            numbers = value if isinstance(value, list) else [value]
                            key = metric["Name"] + suffix
                            sums[key] = sums.get(key, 0) + sum(numbers)
                            if metric.get("Unit") == "Milliseconds":
                                values.setdefault(metric["Name"], []).extend(numbers)
                except (ValueError, KeyError, TypeError):
                    continue  # a line that merely mentions "_aws"
    return sums, values


def print_metrics_summary(sums, values):
    def total(name):
        return int(sum(v for k, v in sums.items() if k == name or k.startswith(name + " ")))

    def split(name):
        parts = [f"{k[len(name) + 1:]}: {int(v)}" for k, v in sorted(sums.items())
                 if k.startswith(name + " ")]
        return ", ".join(parts) if parts else "none"

    print("metrics of this run (the function's EMF log lines):")
    print(f"  statements started: {total('StatementsStarted')} ({split('StatementsStarted')}); "
          f"start failures: {total('StartFailures')}; "
          f"singleton refused: {total('SingletonRefused')}")
    print(f"  callbacks sent: {total('CallbacksSent')} ({split('CallbacksSent')})")
    print(f"  callback failures: {total('CallbackFailures')}; waiters gone: "
          f"{total('WaiterGone')}; duplicate events: {total('DuplicateEvents')}; "
          f"foreign events: {total('ForeignEvents')}; query-runner retries: "
          f"{total('QueryRunnerRetries')}; cold starts: {total('ColdStart')}")
    latency = sorted(values.get("CallbackLatency", []))
    if latency:
        p50 = latency[len(latency) // 2]
        print(f"  callback latency from the completion event: p50 {p50:.0f} ms, "
              f"max {latency[-1]:.0f} ms over {len(latency)} callbacks")


def main():
    if sys.argv[1:] == ["--query-runner-input"]:
        print(json.dumps(query_runner_input(new_run_id())))
        return
    state_dir = sys.argv[1]
    env = read_env(os.path.join(state_dir, "env"))
    examples = read_env(os.path.join(state_dir, "stacks", "demo-examples.env"))
    runner = read_env(os.path.join(state_dir, "stacks", "demo-query-runner.env"))
    sfn, lambda_client = clients(env)

    started = []
    run_started_ms = int(time.time() * 1000)
    run_id = new_run_id()
    for label, what, machine, payload in runs(examples, runner["STATE_MACHINE_ARN"], run_id):
        arn = sfn.start_execution(
            stateMachineArn=machine, name=f"demo-{label}-{run_id}", input=json.dumps(payload)
        )["executionArn"]
        started.append((label, what, arn))

    deadline = time.monotonic() + TIMEOUT_SECONDS
    rows = []
    for label, what, arn in started:
        described = wait(sfn, arn, deadline)
        rows.append((label, what, path_of(sfn, arn), outcome_of(described)))

    # One answer read back through the function, as a state machine's next step would.
    single = next(arn for label, _, arn in started if label == "single_success")
    answer = lambda_client.invoke(
        FunctionName=env["TASKER_FUNCTION_ARN"],
        Payload=json.dumps(
            {"action": "getStatementResult", "statementId": "LATEST", "executionArn": single}
        ),
    )
    result = json.loads(answer["Payload"].read())

    headers = ("execution", "what it shows", "path through the states", "outcome")
    widths = [max(len(str(row[i])) for row in rows + [headers]) for i in range(4)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print(line)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print(line)
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    print(line)
    print(
        "getStatementResult LATEST of single_success, through the function: "
        + json.dumps(result.get("Records", result))
    )

    function_name = env["TASKER_FUNCTION_ARN"].rsplit(":", 1)[-1]
    print_metrics_summary(*emf_metrics(env["TASKER_LOG_DIR"], function_name, run_started_ms))

    expected_failures = {"query_runner_no_match"}
    unexpected = [
        r[0]
        for r in rows
        if (r[3] != "SUCCEEDED") != (r[0] in expected_failures) or r[3] == "RUNNING"
    ]
    if unexpected:
        print("demo: unexpected outcome for " + ", ".join(unexpected), file=sys.stderr)
        sys.exit(1)
    print("every execution ended as expected")


if __name__ == "__main__":
    main()
