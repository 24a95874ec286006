#!/usr/bin/env python3
"""End to end: the CDK example app (cfn/cdk/examples) synthesized, its Lambda zip asset uploaded
to moto's S3, the template deployed into the local stack (scripts/local-stack up: PostgreSQL,
moto, tasker-local), and the seed's six example state machines run to their real outcomes.

Usage: e2e_local_stack.py BUILD_DIR   (BUILD_DIR holds redshift-tasker and tasker-local)

The package must be built first (npm ci && npm run build-dev in cfn/cdk: the cdk_package test).
As in the C++ end-to-end tests, the function runs as BUILD_DIR's own redshift-tasker
(tasker-local's --bootstrap), so the sanitizer build runs end to end; the asset is a zip whose
bootstrap starts that binary. Exits 77 (skipped) when something is missing, unless
RSTASKER_REQUIRE_SERVERS=1. The stack is taken down at the end, and by its watchdog if this
test dies.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PACKAGE = os.path.join(ROOT, "cfn", "cdk")
STACK = "RedshiftTaskerCdkExamples"
ASSETS_BUCKET = "rstasker-cdk-assets"


def unavailable(why):
    print(f"not running the CDK end-to-end test: {why}")
    sys.exit(1 if os.environ.get("RSTASKER_REQUIRE_SERVERS") == "1" else 77)


if len(sys.argv) != 2:
    sys.exit("usage: e2e_local_stack.py BUILD_DIR")
BUILD = os.path.abspath(sys.argv[1])
try:
    import boto3
    import moto.server  # noqa: F401  (scripts/local-stack runs moto's server)
except ImportError as missing:
    unavailable(f"moto with its server extras is not installed ({missing})")
for program in ("node", "zip", "curl", "setsid"):
    if shutil.which(program) is None:
        unavailable(f"{program} is not installed")
APP = os.path.join(PACKAGE, "build", "examples", "app.js")
if not os.path.exists(APP):
    unavailable(f"{APP} is missing: build the package (npm ci && npm run build-dev in cfn/cdk)")
for binary in ("redshift-tasker", "tasker-local"):
    if not os.access(os.path.join(BUILD, binary), os.X_OK):
        unavailable(f"{BUILD}/{binary} is not built")


def run(argv, env=None, timeout=300):
    result = subprocess.run(argv, env=env, timeout=timeout, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def read_assignments(path):
    values = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                values[key] = value
    return values


def bootstrap_zip(path):
    # The zip's bootstrap starts BUILD's redshift-tasker (tasker-local runs that binary itself).
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        archive.writestr(info, f'#!/bin/sh\nexec "{BUILD}/redshift-tasker" "$@"\n')


def synthesize(outdir, env_values, code_zip):
    context = {
        "stackName": STACK,
        "clusterIdentifier": env_values["TASKER_CLUSTER_IDENTIFIER"],
        "dbName": env_values["TASKER_DATABASE"],
        "dbUser": env_values["TASKER_DB_USER"],
        "lambdaZip": code_zip,
        "assetsBucket": ASSETS_BUCKET,
        # moto runs no schedules, and a schedule rule breaks its event delivery (docs/cloudformation.md).
        "reconcile": "false",
    }
    env = dict(os.environ, CDK_OUTDIR=outdir, CDK_CONTEXT_JSON=json.dumps(context))
    run(["node", APP], env=env)
    with open(os.path.join(outdir, f"{STACK}.template.json"), encoding="utf-8") as f:
        template = f.read()
    with open(os.path.join(outdir, f"{STACK}.assets.json"), encoding="utf-8") as f:
        assets = json.load(f)
    return template, assets


def upload_assets(s3, outdir, assets, account, region):
    """Uploads every file asset of the manifest as `cdk deploy` would (a directory is zipped)."""
    uploaded = 0
    for asset in assets.get("files", {}).values():
        source = os.path.join(outdir, asset["source"]["path"])
        if asset["source"].get("packaging") == "zip":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for folder, _, files in os.walk(source):
                    for name in files:
                        full = os.path.join(folder, name)
                        archive.write(full, os.path.relpath(full, source))
            body = buffer.getvalue()
        else:
            with open(source, "rb") as f:
                body = f.read()
        for destination in asset["destinations"].values():
            bucket = destination["bucketName"].replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)
            try:
                s3.create_bucket(Bucket=bucket)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)
            uploaded += 1
    return uploaded


def deploy(cfn, template):
    cfn.create_stack(StackName=STACK, TemplateBody=template,
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
    deadline = time.monotonic() + 180
    while True:
        stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            sys.exit(f"stack {STACK} still {stack['StackStatus']} after 180 s")
        time.sleep(0.2)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        for event in cfn.describe_stack_events(StackName=STACK)["StackEvents"][:20]:
            if event.get("ResourceStatusReason"):
                print(f"  {event['LogicalResourceId']}: {event['ResourceStatusReason']}")
        sys.exit(f"stack {STACK} ended {stack['StackStatus']}")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


# What each example must end with: the execution's status, and a check of its output.
EXPECTED = {
    "SingleSuccess": ("SUCCEEDED", lambda out: "statement" in out),
    "SingleFailure": ("SUCCEEDED", lambda out: out["statement"]["Status"] == "FAILED" and out["statement"]["Error"]),
    "SuccessAndFail": ("SUCCEEDED", lambda out: "first" in out and out["error"]["Error"] == "FAILED"),
    "ParallelNoConcurrency": ("SUCCEEDED", lambda out: sorted(out) == ["ran", "refused"]),
    "CancellingStatement": ("SUCCEEDED", lambda out: out["statement"]["Status"] == "ABORTED"),
    "Polling": ("SUCCEEDED", lambda out: out["statement"]["Status"] == "FINISHED"),
}


def run_examples(sfn, outputs):
    executions = {}
    for name in EXPECTED:
        arn = outputs[f"{name}Arn"]
        executions[name] = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    results = {}
    deadline = time.monotonic() + 240
    while len(results) < len(executions):
        for name, arn in executions.items():
            if name in results:
                continue
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                results[name] = described
        if time.monotonic() > deadline:
            missing = sorted(set(executions) - set(results))
            sys.exit(f"executions still running after 240 s: {missing}")
        time.sleep(0.2)
    failures = []
    for name, (status, check) in EXPECTED.items():
        described = results[name]
        output = json.loads(described.get("output") or "null")
        ok = described["status"] == status
        try:
            ok = ok and bool(check(output))
        except (KeyError, TypeError) as error:
            ok = False
            output = {"output": output, "check error": repr(error)}
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {described['status']} {json.dumps(output)[:300]}"
              + ("" if ok else f" (error {described.get('error')}: {described.get('cause')})"))
        if not ok:
            failures.append(name)
    return failures


def main():
    # In the build directory, as the C++ end-to-end tests' stacks: PostgreSQL (run as the postgres
    # user when the test is root) must reach it, which a private temporary directory denies.
    state = os.path.join(BUILD, "e2e-cdk-local-stack")
    script = os.path.join(ROOT, "scripts", "local-stack")
    env = dict(os.environ,
               RSTASKER_LOCAL_STACK_DIR=os.path.join(state, "stack"),
               RSTASKER_BUILD_DIR=BUILD,
               RSTASKER_LOCAL_STACK_PREBUILT="1",
               RSTASKER_FUNCTION_BOOTSTRAP=os.path.join(BUILD, "redshift-tasker"),
               RSTASKER_LOCAL_STACK_OWNER_PID=str(os.getpid()))
    if os.path.exists(os.path.join(state, "stack", "ports")):
        # A stack a previous run left behind (its watchdog normally takes it down) goes first.
        subprocess.run([script, "down"], env=env, timeout=120, capture_output=True)
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    try:
        run([script, "up"], env=env, timeout=180)
        values = read_assignments(os.path.join(state, "stack", "env"))
        code_zip = os.path.join(state, "redshift-tasker.zip")
        bootstrap_zip(code_zip)
        outdir = os.path.join(state, "cdk.out")
        template, assets = synthesize(outdir, values, code_zip)
        session = boto3.session.Session(aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
                                        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
                                        region_name=values["AWS_REGION"])
        edge = values["AWS_ENDPOINT_URL"]
        account = session.client("sts", endpoint_url=edge).get_caller_identity()["Account"]
        uploaded = upload_assets(session.client("s3", endpoint_url=edge), outdir, assets, account,
                                 values["AWS_REGION"])
        if uploaded == 0:
            sys.exit("the synthesized app has no file asset: where is the Lambda zip?")
        outputs = deploy(session.client("cloudformation", endpoint_url=edge), template)
        print(f"deployed {STACK} ({uploaded} asset(s)); running the examples")
        failures = run_examples(session.client("stepfunctions", endpoint_url=edge), outputs)
        if failures:
            print(f"function logs: {state}/stack/logs/functions")
            sys.exit(f"examples that did not end as expected: {failures}")
        print("every example ended as expected")
    finally:
        subprocess.run([script, "down"], env=env, timeout=120, capture_output=True)


main()
