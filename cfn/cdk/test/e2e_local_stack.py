#!/usr/bin/env python3
"""End to end: the CDK example app (cfn/cdk/examples) synthesized, its Lambda zip asset uploaded
to moto's S3, the template deployed into the local stack (scripts/local-stack up: PostgreSQL,
moto, tasker-local), and the seed's six example state machines run to their real outcomes. Then
the package as users get it: `npm pack` (bundling BUILD_DIR's lambda-zip), the tarball installed
beside an app written as the seed's README shows (test/fixtures/seed-app), synthesized with the
bundled zip as its asset, deployed, and its callback state machine run.

Usage: e2e_local_stack.py BUILD_DIR   (BUILD_DIR holds redshift-tasker and tasker-local)

The package must be built first (npm ci && npm run build-dev in cfn/cdk: the cdk_package test).
As in the C++ end-to-end tests, every function runs as BUILD_DIR's own redshift-tasker
(tasker-local's --bootstrap), so the sanitizer build runs end to end; the example app's asset is
a zip whose bootstrap starts that binary (lambda_zip_test runs the bundled zip's own). Exits 77 (skipped) when something is missing, unless
RSTASKER_REQUIRE_SERVERS=1. The stack is taken down at the end, and by its watchdog if this
test dies.
"""

import glob
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PACKAGE = os.path.join(ROOT, "cfn", "cdk")
STACK = "RedshiftTaskerCdkExamples"
SEED_STACK = "SeedApp"  # the fixture app's stack name
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
# KEY=VALUE files (the local stack's env, deploy-stack's outputs): read as the demo reads them.
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
from demo import read_env  # noqa: E402
for program in ("node", "zip", "curl", "setsid"):
    if shutil.which(program) is None:
        unavailable(f"{program} is not installed")
APP = os.path.join(PACKAGE, "build", "examples", "app.js")
if not os.path.exists(APP):
    unavailable(f"{APP} is missing: build the package (npm ci && npm run build-dev in cfn/cdk)")
for binary in ("redshift-tasker", "tasker-local"):
    if not os.access(os.path.join(BUILD, binary), os.X_OK):
        unavailable(f"{BUILD}/{binary} is not built")
if not glob.glob(os.path.join(BUILD, "redshift-tasker-*.zip")):
    unavailable(f"{BUILD} has no Lambda zip for npm pack to bundle (build the lambda-zip target)")


def run(argv, env=None, timeout=300, cwd=None):
    result = subprocess.run(argv, env=env, timeout=timeout, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def bootstrap_zip(path):
    # The zip's bootstrap starts BUILD's redshift-tasker (tasker-local runs that binary itself).
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        archive.writestr(info, f'#!/bin/sh\nexec "{BUILD}/redshift-tasker" "$@"\n')


def synthesize(app, stack, outdir, env_values, extra_context):
    context = {
        "clusterIdentifier": env_values["TASKER_CLUSTER_IDENTIFIER"],
        "dbName": env_values["TASKER_DATABASE"],
        "dbUser": env_values["TASKER_DB_USER"],
        "assetsBucket": ASSETS_BUCKET,
        # moto runs no schedules, and a schedule rule breaks its event delivery (docs/cloudformation.md).
        "reconcile": "false",
        **extra_context,
    }
    env = dict(os.environ, CDK_OUTDIR=outdir, CDK_CONTEXT_JSON=json.dumps(context))
    run(["node", app], env=env)
    with open(os.path.join(outdir, f"{stack}.assets.json"), encoding="utf-8") as f:
        assets = json.load(f)
    return os.path.join(outdir, f"{stack}.template.json"), assets


def packed_seed_app(state):
    """npm pack, and the seed-style fixture app with the tarball installed beside it (the
    package's peer dependencies are linked from cfn/cdk/node_modules, as an app's own)."""
    pack_dir = os.path.join(state, "pack")
    os.makedirs(pack_dir)
    run(["npm", "pack", "--silent", "--pack-destination", pack_dir], cwd=PACKAGE,
        env=dict(os.environ, RSTASKER_BUILD_DIR=BUILD))
    [tarball] = glob.glob(os.path.join(pack_dir, "*.tgz"))
    app_dir = os.path.join(state, "seed-app")
    installed = os.path.join(app_dir, "node_modules", "redshift-tasker-cdk")
    os.makedirs(installed)
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            member.name = member.name.split("/", 1)[1]  # npm packs under package/
            # The "data" filter where this Python has it (3.11.4 and later).
            archive.extract(member, installed, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    if not glob.glob(os.path.join(installed, "lambda", "redshift-tasker-*.zip")):
        sys.exit(f"the tarball {tarball} holds no Lambda zip")
    for peer in ("aws-cdk-lib", "constructs"):
        os.symlink(os.path.join(PACKAGE, "node_modules", peer), os.path.join(app_dir, "node_modules", peer))
    shutil.copy(os.path.join(PACKAGE, "test", "fixtures", "seed-app", "app.js"), app_dir)
    return os.path.join(app_dir, "app.js"), os.path.getsize(tarball)


def upload_assets(s3, outdir, assets, account, region):
    """Uploads every file asset of the manifest (the Lambda zip, the template itself) as
    `cdk deploy` would (a directory is zipped)."""
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


def deploy(script, env, stack_dir, stack_name, template_path):
    """Deploys with `scripts/local-stack deploy-stack`; returns its outputs (SNAKE_NAME keys)."""
    run([script, "deploy-stack", stack_name, template_path], env=env, timeout=400)
    return read_env(os.path.join(stack_dir, "stacks", f"{stack_name}.env"))


def output_key(name):
    # deploy-stack writes the output SingleSuccessArn as SINGLE_SUCCESS_ARN.
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


# What each example must end with: the execution's status, and a check of its output.
EXPECTED = {
    "SingleSuccess": ("SUCCEEDED", lambda out: "statement" in out),
    "SingleFailure": ("SUCCEEDED", lambda out: out["statement"]["Status"] == "FAILED" and out["statement"]["Error"]),
    "SuccessAndFail": ("SUCCEEDED", lambda out: "first" in out and out["error"]["Error"] == "FAILED"),
    "ParallelNoConcurrency": ("SUCCEEDED", lambda out: sorted(out) == ["ran", "refused"]),
    "CancellingStatement": ("SUCCEEDED", lambda out: out["statement"]["Status"] == "ABORTED"),
    "Polling": ("SUCCEEDED", lambda out: out["statement"]["Status"] == "FINISHED"),
}


# The seed-style app's one callback task: its output is the completion the tasker called back with.
SEED_EXPECTED = {"SeedStyle": ("SUCCEEDED", lambda out: out["detail"]["state"] == "FINISHED")}


def run_examples(sfn, outputs, expected):
    executions = {}
    for name in expected:
        arn = outputs[output_key(f"{name}Arn")]
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
    for name, (status, check) in expected.items():
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
    stack_dir = os.path.join(state, "stack")
    script = os.path.join(ROOT, "scripts", "local-stack")
    env = dict(os.environ,
               RSTASKER_LOCAL_STACK_DIR=stack_dir,
               RSTASKER_BUILD_DIR=BUILD,
               RSTASKER_LOCAL_STACK_PREBUILT="1",
               RSTASKER_FUNCTION_BOOTSTRAP=os.path.join(BUILD, "redshift-tasker"),
               RSTASKER_LOCAL_STACK_OWNER_PID=str(os.getpid()))
    if os.path.exists(os.path.join(stack_dir, "ports")):
        # A stack a previous run left behind (its watchdog normally takes it down) goes first.
        subprocess.run([script, "down"], env=env, timeout=120, capture_output=True)
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    try:
        run([script, "up"], env=env, timeout=180)
        values = read_env(os.path.join(stack_dir, "env"))
        code_zip = os.path.join(state, "redshift-tasker.zip")
        bootstrap_zip(code_zip)
        outdir = os.path.join(state, "cdk.out")
        template, assets = synthesize(APP, STACK, outdir, values,
                                      {"stackName": STACK, "lambdaZip": code_zip})
        session = boto3.session.Session(aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
                                        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
                                        region_name=values["AWS_REGION"])
        edge = values["AWS_ENDPOINT_URL"]
        account = session.client("sts", endpoint_url=edge).get_caller_identity()["Account"]
        s3 = session.client("s3", endpoint_url=edge)
        sfn = session.client("stepfunctions", endpoint_url=edge)
        uploaded = upload_assets(s3, outdir, assets, account, values["AWS_REGION"])
        outputs = deploy(script, env, stack_dir, STACK, template)
        print(f"deployed {STACK} ({uploaded} asset(s)); running the examples")
        failures = run_examples(sfn, outputs, EXPECTED)

        seed_app, tarball_size = packed_seed_app(state)
        seed_out = os.path.join(state, "seed-app.out")
        template, assets = synthesize(seed_app, SEED_STACK, seed_out, values, {})
        uploaded = upload_assets(s3, seed_out, assets, account, values["AWS_REGION"])
        outputs = deploy(script, env, stack_dir, SEED_STACK, template)
        print(f"deployed {SEED_STACK} from the packed tarball ({tarball_size} bytes, {uploaded} asset(s))")
        failures += run_examples(sfn, outputs, SEED_EXPECTED)
        if failures:
            print(f"function logs: {stack_dir}/logs/functions")
            sys.exit(f"examples that did not end as expected: {failures}")
        print("every example ended as expected")
    finally:
        subprocess.run([script, "down"], env=env, timeout=120, capture_output=True)


main()
