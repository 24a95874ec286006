#!/usr/bin/env python3
"""Deploys the templates of cfn/ in every variant their conditions allow into moto, and checks
that each reaches CREATE_COMPLETE with the resources and permissions its conditions call for.

cfn/tasker.yaml: every combination of target (cluster with DbUser, cluster with SecretArn,
workgroup, workgroup with WorkgroupId, workgroup with SecretArn), reconcile schedule (on, off) and
reserved concurrency (none, 5); each FunctionTimeout (and so each visibility-timeout branch) is
used by some of them, and each Architecture (x86_64, arm64) with an explicit CodeS3Key and with
the default one (redshift-tasker-<Architecture>.zip). cfn/query-runner.yaml: without a default target, and with one granted to
the tasker's role (TaskerRoleName) plus the callback flavour; deleting it takes the grant away.

moto (scripts/moto_launcher.py on a free port) is started for this test and stopped at its end;
moto evaluates no template Rules and enforces no IAM, so what is checked is that CloudFormation
creates what the conditions select, with the policies they select. Exits 77 (skipped) when moto
is not installed, unless RSTASKER_REQUIRE_SERVERS=1.
"""

import ast
import base64
import ctypes
import io
import itertools
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REGION = "us-east-1"
ACCOUNT = "123456789012"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:tasker-db-AbCdEf"
WORKGROUP_ID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
TIMEOUTS = [30, 60, 120, 300, 900]  # every FunctionTimeout, so every visibility-timeout branch
# (Architecture, explicit CodeS3Key or the default one): every combination.
CODE_VARIANTS = [("x86_64", True), ("arm64", False), ("x86_64", False), ("arm64", True)]
CODE_KEYS = ["tasker.zip", "redshift-tasker-x86_64.zip", "redshift-tasker-arm64.zip"]

try:
    import boto3
    from botocore.exceptions import ClientError
    import moto.server  # noqa: F401  (the server extras: what scripts/moto_launcher.py runs)
    import yaml  # moto needs it too
except ImportError as missing:
    print(f"moto with its server extras is not installed ({missing}); not deploying templates")
    sys.exit(1 if os.environ.get("RSTASKER_REQUIRE_SERVERS") == "1" else 77)

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    # The moto child goes when this test goes, even when ctest kills it at its timeout.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Moto:
    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="cfn-deploy-variants-moto.", suffix=".log")
        env = dict(os.environ, MOTO_PORT=str(self.port), AWS_ACCESS_KEY_ID="moto-internal",
                   AWS_SECRET_ACCESS_KEY="moto-internal", AWS_DEFAULT_REGION=REGION,
                   PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts", "moto_launcher.py"), "-H",
             "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            preexec_fn=die_with_parent)
        deadline = time.monotonic() + 60
        while True:  # moto offers nothing to wait on but its port
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited with {self.process.returncode}:\n{self.tail()}")
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto did not answer within 60 s:\n" + self.tail())
                time.sleep(0.05)

    def tail(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as log:
            return log.read()[-4000:]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def template(name):
    with open(os.path.join(ROOT, "cfn", name), encoding="utf-8") as file:
        return file.read()


class Deployer:
    def __init__(self, endpoint):
        session = boto3.session.Session(aws_access_key_id="AKIDVARIANTS",
                                        aws_secret_access_key="variants-secret",
                                        region_name=REGION)
        self.cfn = session.client("cloudformation", endpoint_url=endpoint)
        self.iam = session.client("iam", endpoint_url=endpoint)
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        self.lam = session.client("lambda", endpoint_url=endpoint)
        s3 = session.client("s3", endpoint_url=endpoint)
        # The function's code: moto's Lambda needs the object to exist, not to run. Each key holds
        # different bytes, so the function's CodeSha256 tells which one it was made from.
        s3.create_bucket(Bucket="artifacts")
        self.code_sha256 = {}
        for key in CODE_KEYS:
            code = io.BytesIO()
            with zipfile.ZipFile(code, "w") as archive:
                archive.writestr("bootstrap", f"#!/bin/sh\n# {key}\n")
            s3.put_object(Bucket="artifacts", Key=key, Body=code.getvalue())
            self.code_sha256[key] = base64.b64encode(
                hashlib.sha256(code.getvalue()).digest()).decode()

    def deploy(self, stack, body, parameters):
        """Creates the stack and waits for it; its status and outputs."""
        self.cfn.create_stack(
            StackName=stack, TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": str(v)}
                        for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
        described = self.wait(stack)
        status = described["StackStatus"] if described else "DELETE_COMPLETE"
        if status != "CREATE_COMPLETE":
            for event in self.cfn.describe_stack_events(StackName=stack)["StackEvents"][:10]:
                if event.get("ResourceStatusReason"):
                    print(f"  {event['LogicalResourceId']}: {event['ResourceStatusReason']}")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in (described or {}).get("Outputs", [])}
        return status, outputs

    def wait(self, stack):
        deadline = time.monotonic() + 120
        while True:  # CloudFormation offers nothing to wait on but polling (boto3's waiters poll)
            try:
                described = self.cfn.describe_stacks(StackName=stack)["Stacks"][0]
            except ClientError as error:
                if "does not exist" in str(error):
                    return None
                raise
            if not described["StackStatus"].endswith("_IN_PROGRESS"):
                return described
            if time.monotonic() > deadline:
                return described
            time.sleep(0.05)

    def delete(self, stack):
        self.cfn.delete_stack(StackName=stack)
        described = self.wait(stack)
        return described["StackStatus"] if described else "DELETE_COMPLETE"

    def resources(self, stack):
        # moto also lists the resources whose Condition is false, without a logical id.
        return {r["LogicalResourceId"]: r
                for r in self.cfn.describe_stack_resources(StackName=stack)["StackResources"]
                if r.get("LogicalResourceId")}

    def role_policy(self, role, name):
        document = self.iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if not isinstance(document, str):
            return document
        try:
            return json.loads(document)
        except ValueError:
            # moto keeps a role's inline policies from CloudFormation as Python's repr of them.
            return ast.literal_eval(document)

    def statement(self, role, policy, sid):
        for statement in self.role_policy(role, policy)["Statement"]:
            if statement.get("Sid") == sid:
                return statement
        return None


def arn(service, resource):
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


TARGETS = {
    "cluster-dbuser": {"ClusterIdentifier": "cluster-1", "DbUser": "tasker"},
    "cluster-secret": {"ClusterIdentifier": "cluster-1", "SecretArn": SECRET},
    "workgroup": {"WorkgroupName": "wg-1"},
    "workgroup-id": {"WorkgroupName": "wg-1", "WorkgroupId": WORKGROUP_ID},
    "workgroup-secret": {"WorkgroupName": "wg-1", "SecretArn": SECRET},
}


def expected_permissions(target):
    """(start-statement resource, credentials actions, credentials resources) for a target."""
    if "ClusterIdentifier" in target:
        start = arn("redshift", "cluster:cluster-1")
    elif "WorkgroupId" in target:
        start = arn("redshift-serverless", f"workgroup/{WORKGROUP_ID}")
    else:
        start = arn("redshift-serverless", "workgroup/*")
    if "SecretArn" in target:
        return start, "secretsmanager:GetSecretValue", [SECRET]
    if "ClusterIdentifier" in target:
        return start, "redshift:GetClusterCredentials", [
            arn("redshift", "dbuser:cluster-1/tasker"), arn("redshift", "dbname:cluster-1/dev")]
    return start, "redshift-serverless:GetCredentials", [start]


def as_list(value):
    return value if isinstance(value, list) else [value]


def check_tasker(deployer, stack, target, schedule, reserved, timeout, architecture, code_key,
                 outputs):
    name = f"tasker {stack}"
    for key in ("FunctionArn", "FunctionName", "RoleName", "RoleArn", "TableName", "QueueUrl"):
        check(outputs.get(key), f"{name}: output {key} is missing")
    # moto creates the function without its Architectures (see check_architecture_is_passed);
    # the code object is the one the Architecture selects when CodeS3Key is "".
    configuration = deployer.lam.get_function_configuration(FunctionName=outputs["FunctionName"])
    check(configuration.get("CodeSha256") == deployer.code_sha256[code_key],
          f"{name}: the function's code is not the object {code_key} ({architecture})")
    resources = deployer.resources(stack)
    for conditional in ("ReconcileRule", "ReconcilePermission"):
        check((conditional in resources) == bool(schedule),
              f"{name}: {conditional} {'missing' if schedule else 'created'} "
              f"with ReconcileSchedule={schedule!r}")

    environment = deployer.lam.get_function_configuration(
        FunctionName=outputs["FunctionName"])["Environment"]["Variables"]
    for variable, parameter in (("CLUSTER_IDENTIFIER", "ClusterIdentifier"),
                                ("WORKGROUP_NAME", "WorkgroupName"), ("DB_USER", "DbUser"),
                                ("SECRET_ARN", "SecretArn"), ("DATABASE", "Database")):
        want = {**target, "Database": "dev"}.get(parameter, "")
        check(environment.get(variable, "") == want,
              f"{name}: {variable} is {environment.get(variable)!r}, not {want!r}")
    concurrency = deployer.lam.get_function_concurrency(FunctionName=outputs["FunctionName"])
    check(concurrency.get("ReservedConcurrentExecutions") == (reserved or None),
          f"{name}: reserved concurrency {concurrency} with ReservedConcurrency={reserved}")

    visibility = deployer.sqs.get_queue_attributes(
        QueueUrl=outputs["QueueUrl"], AttributeNames=["VisibilityTimeout"])["Attributes"]
    check(visibility["VisibilityTimeout"] == str(6 * timeout),
          f"{name}: visibility timeout {visibility['VisibilityTimeout']} with "
          f"FunctionTimeout={timeout} (six times it is {6 * timeout})")

    start, action, credentials = expected_permissions(target)
    role = outputs["RoleName"]
    statement = deployer.statement(role, "redshift-tasker", "StartStatementsOnTheTarget")
    check(statement and as_list(statement["Resource"]) == [start],
          f"{name}: StartStatementsOnTheTarget is {statement}, not on {start}")
    statement = deployer.statement(role, "redshift-tasker", "DatabaseCredentials")
    check(statement and as_list(statement["Action"]) == [action]
          and as_list(statement["Resource"]) == credentials,
          f"{name}: DatabaseCredentials is {statement}, not {action} on {credentials}")


def check_architecture_is_passed():
    """moto's CloudFormation drops an AWS::Lambda::Function's Architectures, so the template
    itself is read: the function's Architectures is the Architecture parameter."""
    loader = type("CfnLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", lambda loader, tag, node: {
        tag: loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)})
    parsed = yaml.load(template("tasker.yaml"), Loader=loader)
    architectures = parsed["Resources"]["Function"]["Properties"].get("Architectures")
    check(architectures == [{"Ref": "Architecture"}],
          f"tasker.yaml: the function's Architectures is {architectures}, not the parameter")
    check(parsed["Parameters"]["Architecture"].get("AllowedValues") == ["x86_64", "arm64"],
          "tasker.yaml: Architecture does not allow exactly x86_64 and arm64")


def tasker_variants(deployer):
    body = template("tasker.yaml")
    timeouts = itertools.cycle(TIMEOUTS)
    code_variants = itertools.cycle(CODE_VARIANTS)
    for (label, target), schedule, reserved in itertools.product(
            TARGETS.items(), ["", "rate(5 minutes)"], [0, 5]):
        timeout = next(timeouts)
        architecture, explicit_key = next(code_variants)
        stack = (f"tasker-{label}-{'schedule' if schedule else 'noschedule'}-r{reserved}-"
                 f"{architecture}")
        parameters = {**target, "Database": "dev", "CodeS3Bucket": "artifacts",
                      "Architecture": architecture, "ReconcileSchedule": schedule,
                      "ReservedConcurrency": reserved, "FunctionTimeout": timeout}
        code_key = f"redshift-tasker-{architecture}.zip"
        if explicit_key:
            code_key = parameters["CodeS3Key"] = "tasker.zip"
        status, outputs = deployer.deploy(stack, body, parameters)
        check(status == "CREATE_COMPLETE", f"tasker {stack}: {status}")
        if status == "CREATE_COMPLETE":
            check_tasker(deployer, stack, target, schedule, reserved, timeout, architecture,
                         code_key, outputs)
        status = deployer.delete(stack)
        check(status == "DELETE_COMPLETE", f"tasker {stack}: deleting it ended {status}")
        print(f"tasker.yaml {stack}: checked", flush=True)


def query_runner_variants(deployer):
    tasker = "tasker-for-runner"
    status, tasker_outputs = deployer.deploy(tasker, template("tasker.yaml"), {
        **TARGETS["cluster-dbuser"], "Database": "dev", "CodeS3Bucket": "artifacts",
        "CodeS3Key": "tasker.zip", "ReconcileSchedule": ""})
    check(status == "CREATE_COMPLETE", f"{tasker}: {status}")
    if status != "CREATE_COMPLETE":
        return
    role = tasker_outputs["RoleName"]
    body = template("query-runner.yaml")
    function = tasker_outputs["FunctionArn"]

    def role_policies():
        return set(deployer.iam.list_role_policies(RoleName=role)["PolicyNames"])

    # The tasker's own target: nothing is granted.
    status, outputs = deployer.deploy("runner-own-target", body, {"TaskerFunctionArn": function})
    check(status == "CREATE_COMPLETE", f"runner-own-target: {status}")
    check(outputs.get("StateMachineArn") and "CallbackStateMachineArn" not in outputs,
          f"runner-own-target: outputs {outputs}")
    check("DefaultTargetPolicy" not in deployer.resources("runner-own-target"),
          "runner-own-target: a policy was created without a default target")
    check(role_policies() == {"redshift-tasker"}, f"runner-own-target: role has {role_policies()}")

    # Another cluster as the default: the tasker's role may use exactly that target.
    stack = "runner-other-cluster"
    status, outputs = deployer.deploy(stack, body, {
        "TaskerFunctionArn": function, "TaskerRoleName": role, "DefaultClusterId": "analytics",
        "DefaultDb": "warehouse", "DefaultUser": "etl", "CreateCallbackRunner": "true",
        "ResultsRoleAwsPrincipals": ACCOUNT})
    check(status == "CREATE_COMPLETE", f"{stack}: {status}")
    check(outputs.get("StateMachineArn") and outputs.get("CallbackStateMachineArn"),
          f"{stack}: outputs {outputs}")
    policy = f"{stack}-default-target"
    check(policy in role_policies(), f"{stack}: the tasker's role has only {role_policies()}")
    if policy in role_policies():
        start = deployer.statement(role, policy, "StartStatementsOnTheDefaultCluster")
        check(start and as_list(start["Action"]) == ["redshift-data:ExecuteStatement"]
              and as_list(start["Resource"]) == [arn("redshift", "cluster:analytics")],
              f"{stack}: StartStatementsOnTheDefaultCluster is {start}")
        credentials = deployer.statement(role, policy, "DefaultUserCredentials")
        check(credentials and as_list(credentials["Action"]) == ["redshift:GetClusterCredentials"]
              and as_list(credentials["Resource"]) == [arn("redshift", "dbuser:analytics/etl"),
                                                       arn("redshift",
                                                           "dbname:analytics/warehouse")],
              f"{stack}: DefaultUserCredentials is {credentials}")
    status = deployer.delete(stack)
    check(status == "DELETE_COMPLETE", f"{stack}: deleting it ended {status}")
    check(role_policies() == {"redshift-tasker"},
          f"{stack}: after its deletion the tasker's role still has {role_policies()}")
    for name in ("runner-own-target", tasker):
        status = deployer.delete(name)
        check(status == "DELETE_COMPLETE", f"{name}: deleting it ended {status}")
    print("query-runner.yaml: checked", flush=True)


def main():
    moto = Moto()
    try:
        deployer = Deployer(moto.endpoint)
        check_architecture_is_passed()
        tasker_variants(deployer)
        query_runner_variants(deployer)
    except Exception:
        print("moto's log:\n" + moto.tail())
        raise
    finally:
        moto.stop()
    if failures:
        print(f"{len(failures)} problem(s)")
        sys.exit(1)
    print("every variant deployed as its conditions say")


if __name__ == "__main__":
    main()
