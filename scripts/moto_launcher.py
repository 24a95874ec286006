#!/usr/bin/env python3
"""Start moto's server with the fixes the local stack depends on (four in Step Functions, one in
SQS, one in DynamoDB).

Usage: moto_launcher.py [moto_server arguments...]   (e.g. -H 127.0.0.1 -p 5123)

The arguments go unchanged to moto.server.main, so this behaves like `moto_server` except for
the patches below. All were found and checked against moto 5.2.1; each patch first checks that
the code it replaces still looks the way it did then, and exits with status 3 and a message
naming the patch when it does not. Running an unpatched moto would turn these bugs back into
confusing test failures far from their cause, so a loud stop is the better failure.

1. Executions after the first one answer HTTP 500.
   With execution enabled (POST /moto-api/config {"stepfunctions": {"execute_state_machine":
   true}}), StartExecution deep-copies the state machine. The copy follows `backend` (every
   state machine of the region) and `executions` (running executions hold threads and locks),
   so once one execution exists, every later StartExecution in that region fails. The patch
   gives StateMachine a __deepcopy__ that shares `backend` instead of copying it and starts the
   copy with no executions; everything else is copied as before.

2. SendTaskFailure loses its cause.
   StepFunctionResponse.send_task_failure reads `taskToken` and `error` and passes only those to
   the backend, so a Catch sees "Cause": null. The executing backend accepts `cause`; the patch
   replaces the response handler with one that passes it on. (The non-executing backend takes
   no cause; it gets the call it got before.)

3. moto pushes SQS messages to Lambda itself.
   For every queue with an event-source mapping, moto's SQS receives each new message as it is
   sent and invokes the mapped function through its own Lambda, which cannot run functions here
   (it needs Docker); the messages are then made visible again. tasker-local runs the mappings
   (it polls the queue and invokes our binary), so moto's push only costs each message one extra
   receive (ApproximateReceiveCount) and so a step towards the dead-letter queue. The push walks
   Queue.lambda_event_source_mappings, which LambdaBackend.create_event_source_mapping fills; the
   patch gives every new Queue a mapping dict that ignores writes, so moto never learns of a
   mapping and never pushes. The mappings themselves (CreateEventSourceMapping, List, Get, Update,
   Delete, CloudFormation) are kept by the Lambda backend and work as before.

4. State machines of CloudFormation stacks cannot be executed.
   With execution enabled, the Step Functions API is served by a second backend (the executing
   one, moto.stepfunctions.parser), but StateMachine's CloudFormation handlers keep creating,
   updating and deleting state machines in the first: a stack's state machines are missing from
   ListStateMachines and StartExecution answers StateMachineDoesNotExist. Those handlers are the
   only users of the name `stepfunctions_backends` in moto.stepfunctions.models; the patch binds
   that name to a stand-in whose [account][region] is the backend the API serves (the executing
   one once execution is enabled, the first one before).

5. DynamoDB conditional writes are not atomic.
   moto serves requests on several threads and evaluates a ConditionExpression and applies the
   write without holding a lock, so two concurrent conditional writes of one item can both pass
   their condition (seen with 6 concurrent conditional updates of one item: two winners in 5 of
   40 trials). DynamoDB serialises the writes to an item, and the tasker's completion claims and
   singleton locks rely on exactly that. The patch makes moto's DynamoDB handler serve one
   request at a time (DynamoHandler.call_action under a lock); other services are not affected.

6. A callback that arrives before the task's invocation returns is lost when the task has
   HeartbeatSeconds.
   A waitForTaskToken task creates its heartbeat clock (CallbackEndpoint.setup_heartbeat_endpoint)
   only after the integration call (e.g. lambda:invoke) has returned, and SendTaskSuccess or
   SendTaskFailure wakes only a heartbeat clock that exists. A callback sent during the call (a
   function that answers at once, or a statement that ends before its start returns) is stored
   but wakes nobody: the task waits out HeartbeatSeconds and fails States.Timeout. Step Functions
   takes such a callback. The patch has a heartbeat clock created after the outcome arrived
   start awake, so the task ends with that outcome.

Besides the fixes, the launcher makes SIGTERM and SIGINT end the server at once. moto's own
handler exits through interpreter finalization, which spends about two seconds garbage-collecting
moto's modules; a test that starts and stops moto pays that every time, and nothing in moto needs
finalizing. This one only saves time, so if moto.server.signal_handler has moved it is skipped
with a note.

If a later moto fixes a bug itself (StateMachine defining its own __deepcopy__, or a handler
that already reads "cause"), the corresponding patch is left out and a note is printed. Patch 3
is not a bug fix but a division of labour, so it is always applied.
"""

import ast
import copy
import importlib.util
import inspect
import os
import sys
import threading

CHECKED_MOTO_VERSION = "5.2.1"
EXIT_PATCH_FAILED = 3


class PatchError(Exception):
    """moto's internals no longer match what a patch was written for."""


def note(message):
    print(f"moto_launcher: {message}", file=sys.stderr, flush=True)


def require(owner, name, patch):
    value = getattr(owner, name, None)
    if value is None:
        owner_name = getattr(owner, "__name__", repr(owner))
        raise PatchError(f"{patch}: {owner_name}.{name} is missing")
    return value


def init_assigns(cls, attributes, patch):
    """Checks, from the source of the __init__ methods along cls's MRO, that they still set
    `self.<attr>` for each attribute."""
    sources = []
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__ and klass.__module__.startswith("moto."):
            try:
                sources.append(inspect.getsource(klass.__dict__["__init__"]))
            except (OSError, TypeError) as error:
                raise PatchError(f"{patch}: cannot read {klass.__name__}.__init__") from error
    source = "\n".join(sources)
    missing = [a for a in attributes if f"self.{a} =" not in source and f"self.{a}:" not in source]
    if missing:
        raise PatchError(f"{patch}: {cls.__name__} no longer sets {', '.join(missing)} in __init__")


def shallow_backend_deepcopy(self, memo):
    """Deep copy that shares `backend` and starts with no executions (see patch 1)."""
    clone = type(self).__new__(type(self))
    memo[id(self)] = clone
    for key, value in self.__dict__.items():
        if key == "backend":
            clone.__dict__[key] = value
        elif key == "executions":
            clone.__dict__[key] = []
        else:
            clone.__dict__[key] = copy.deepcopy(value, memo)
    return clone


def patch_state_machine_deepcopy():
    patch = "patch 1 (StateMachine deepcopy)"
    try:
        from moto.stepfunctions import models
    except ImportError as error:
        raise PatchError(f"{patch}: cannot import moto.stepfunctions.models ({error})") from error

    state_machine = require(models, "StateMachine", patch)
    init_assigns(state_machine, ["backend", "executions"], patch)
    if "__deepcopy__" in state_machine.__dict__:
        note(f"{patch}: StateMachine defines __deepcopy__ already; left as moto has it")
        return
    state_machine.__deepcopy__ = shallow_backend_deepcopy


def method_node(module_name, class_name, function_name, patch):
    """A method's AST and its module's source, read without importing the module.

    Importing moto's executing Step Functions backend costs seconds (its ASL parser), and moto
    itself imports it only once execution is enabled; every moto start would pay otherwise.
    The same goes for moto's Lambda backend (Docker support and more).
    """
    try:
        spec = importlib.util.find_spec(module_name)
    except ImportError as error:
        raise PatchError(f"{patch}: cannot find {module_name} ({error})") from error
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise PatchError(f"{patch}: no Python source for {module_name}")
    with open(spec.origin, encoding="utf-8") as source_file:
        source = source_file.read()
    tree = ast.parse(source, filename=spec.origin)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == function_name:
                    return item, source
            raise PatchError(f"{patch}: {module_name}.{class_name} has no {function_name}")
    raise PatchError(f"{patch}: {module_name} has no class {class_name}")


def function_parameters(module_name, class_name, function_name, patch):
    """Parameter names of a method, read from the module's source without importing it."""
    node, _ = method_node(module_name, class_name, function_name, patch)
    args = node.args
    return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]


def patch_send_task_failure():
    patch = "patch 2 (SendTaskFailure cause)"
    try:
        from moto.core import responses as core_responses
        from moto.stepfunctions import responses
    except ImportError as error:
        raise PatchError(f"{patch}: cannot import moto.stepfunctions ({error})") from error

    response_cls = require(responses, "StepFunctionResponse", patch)
    original = require(response_cls, "send_task_failure", patch)
    require(response_cls, "_get_param", patch)
    if not isinstance(inspect.getattr_static(response_cls, "stepfunction_backend", None), property):
        raise PatchError(f"{patch}: StepFunctionResponse.stepfunction_backend is not a property")
    empty_result = require(core_responses, "EmptyResult", patch)

    parameters = function_parameters(
        "moto.stepfunctions.parser.models", "StepFunctionsParserBackend", "send_task_failure", patch
    )
    if "cause" not in parameters:
        raise PatchError(f"{patch}: the executing backend's send_task_failure takes no 'cause'")

    try:
        source = inspect.getsource(original)
    except (OSError, TypeError) as error:
        raise PatchError(f"{patch}: cannot read StepFunctionResponse.send_task_failure") from error
    if '"cause"' in source:
        note(f"{patch}: moto's handler reads the cause already; left as moto has it")
        return
    if '"taskToken"' not in source or '"error"' not in source:
        raise PatchError(f"{patch}: StepFunctionResponse.send_task_failure changed shape")

    def send_task_failure(self):
        backend = self.stepfunction_backend
        arguments = {"error": self._get_param("error")}
        # The non-executing backend takes no cause (and ignores the call anyway).
        if "cause" in inspect.signature(backend.send_task_failure).parameters:
            arguments["cause"] = self._get_param("cause")
        backend.send_task_failure(self._get_param("taskToken"), **arguments)
        return empty_result()

    send_task_failure.__doc__ = "SendTaskFailure passing error and cause (moto_launcher patch 2)."
    response_cls.send_task_failure = send_task_failure


class WriteIgnoringDict(dict):
    """A Queue's lambda_event_source_mappings under patch 3: reads work, writes are dropped."""

    def __setitem__(self, key, value):
        pass

    def setdefault(self, key, default=None):
        return self.get(key, default)

    def update(self, *args, **kwargs):
        pass


def patch_sqs_lambda_push():
    patch = "patch 3 (no SQS push to Lambda)"
    try:
        from moto.sqs import models
    except ImportError as error:
        raise PatchError(f"{patch}: cannot import moto.sqs.models ({error})") from error

    queue_cls = require(models, "Queue", patch)
    init_assigns(queue_cls, ["lambda_event_source_mappings"], patch)
    # The push: Queue.add_message walks the mappings and receives the new message for each one.
    add_message = require(queue_cls, "add_message", patch)
    try:
        add_source = inspect.getsource(add_message)
    except (OSError, TypeError) as error:
        raise PatchError(f"{patch}: cannot read Queue.add_message") from error
    if "self.lambda_event_source_mappings" not in add_source:
        raise PatchError(f"{patch}: Queue.add_message no longer reads lambda_event_source_mappings")
    # How a mapping reaches the queue: LambdaBackend.create_event_source_mapping stores it with
    # `queue.lambda_event_source_mappings[...] = esm`. Any other way would bypass the patch.
    node, source = method_node(
        "moto.awslambda.models", "LambdaBackend", "create_event_source_mapping", patch
    )
    stores = [
        target
        for statement in ast.walk(node)
        if isinstance(statement, ast.Assign)
        for target in statement.targets
        if isinstance(target, ast.Subscript)
        and ast.get_source_segment(source, target.value) == "queue.lambda_event_source_mappings"
    ]
    if not stores:
        raise PatchError(
            f"{patch}: LambdaBackend.create_event_source_mapping no longer stores the mapping in "
            "queue.lambda_event_source_mappings"
        )

    original_init = queue_cls.__init__
    if getattr(original_init, "__moto_launcher_patch__", False):
        return

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.lambda_event_source_mappings = WriteIgnoringDict(self.lambda_event_source_mappings)

    __init__.__doc__ = "Queue.__init__, then mappings that ignore writes (moto_launcher patch 3)."
    __init__.__wrapped__ = original_init
    __init__.__moto_launcher_patch__ = True
    queue_cls.__init__ = __init__


class ApiStepFunctionsBackends:
    """moto.stepfunctions.models.stepfunctions_backends under patch 4: [account][region] is the
    backend that serves the Step Functions API at the moment of the lookup."""

    class Account:
        def __init__(self, get_backend, account_id):
            self._get_backend = get_backend
            self._account_id = account_id

        def __getitem__(self, region_name):
            return self._get_backend(self._account_id, region_name)

    def __init__(self, get_backend):
        self._get_backend = get_backend

    def __getitem__(self, account_id):
        return ApiStepFunctionsBackends.Account(self._get_backend, account_id)


CLOUDFORMATION_HANDLERS = (
    "create_from_cloudformation_json",
    "update_from_cloudformation_json",
    "delete_from_cloudformation_json",
)


def patch_cloudformation_state_machines():
    patch = "patch 4 (CloudFormation state machines)"
    try:
        from moto.stepfunctions import models, responses
    except ImportError as error:
        raise PatchError(f"{patch}: cannot import moto.stepfunctions ({error})") from error

    require(models, "stepfunctions_backends", patch)
    state_machine = require(models, "StateMachine", patch)
    get_backend = require(responses, "get_backend", patch)
    try:
        get_backend_source = inspect.getsource(get_backend)
        models_source = inspect.getsource(models)
    except (OSError, TypeError) as error:
        raise PatchError(f"{patch}: cannot read moto.stepfunctions' source") from error
    if "execute_state_machine" not in get_backend_source:
        raise PatchError(f"{patch}: responses.get_backend no longer chooses by execute_state_machine")
    if isinstance(models.stepfunctions_backends, ApiStepFunctionsBackends):
        return

    # Every use of the name must be in StateMachine's CloudFormation handlers: rebinding it must
    # change nothing else. moto 5.2.1 has one in each of the three.
    def uses_in(node):
        return sum(
            1
            for name in ast.walk(node)
            if isinstance(name, ast.Name) and name.id == "stepfunctions_backends"
            and isinstance(name.ctx, ast.Load)
        )

    tree = ast.parse(models_source)
    in_handlers = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == state_machine.__name__:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name in CLOUDFORMATION_HANDLERS:
                    in_handlers[item.name] = uses_in(item)
    if not in_handlers.get("create_from_cloudformation_json"):
        if "get_backend" in inspect.getsource(state_machine.create_from_cloudformation_json):
            note(f"{patch}: StateMachine's CloudFormation handlers choose the backend already; "
                 "left as moto has it")
            return
        raise PatchError(f"{patch}: StateMachine.create_from_cloudformation_json changed shape")
    if sum(in_handlers.values()) != uses_in(tree):
        raise PatchError(
            f"{patch}: moto.stepfunctions.models uses stepfunctions_backends outside "
            "StateMachine's CloudFormation handlers"
        )
    models.stepfunctions_backends = ApiStepFunctionsBackends(get_backend)


def patch_dynamodb_one_request_at_a_time():
    patch = "patch 5 (DynamoDB conditional writes)"
    try:
        from moto.dynamodb import responses
    except ImportError as error:
        raise PatchError(f"{patch}: cannot import moto.dynamodb.responses ({error})") from error

    handler = require(responses, "DynamoHandler", patch)
    original = require(handler, "call_action", patch)
    if getattr(original, "__moto_launcher_patch__", False):
        return
    lock = threading.Lock()

    def call_action(self):
        with lock:
            return original(self)

    call_action.__doc__ = "DynamoHandler.call_action, one request at a time (moto_launcher patch 5)."
    call_action.__wrapped__ = original
    call_action.__moto_launcher_patch__ = True
    handler.call_action = call_action


def patch_early_callback():
    patch = "patch 6 (callback before the heartbeat clock)"
    try:
        from moto.stepfunctions.parser.asl.eval.callback import callback
    except ImportError as error:
        raise PatchError(f"{patch}: cannot import moto's callback module ({error})") from error

    endpoint_cls = require(callback, "CallbackEndpoint", patch)
    init_assigns(endpoint_cls, ["_notify_event", "_heartbeat_endpoint"], patch)
    require(callback, "HeartbeatEndpoint", patch)
    original = require(endpoint_cls, "setup_heartbeat_endpoint", patch)
    if getattr(original, "__moto_launcher_patch__", False):
        return
    try:
        notify_source = inspect.getsource(endpoint_cls.notify)
    except (OSError, TypeError) as error:
        raise PatchError(f"{patch}: cannot read CallbackEndpoint.notify") from error
    if "self._notify_event.set()" not in notify_source:
        raise PatchError(f"{patch}: CallbackEndpoint.notify no longer sets _notify_event")

    def setup_heartbeat_endpoint(self, heartbeat_seconds):
        endpoint = original(self, heartbeat_seconds)
        # notify() sets _notify_event before it looks for the heartbeat clock, and this looks at
        # _notify_event after the clock exists: one of the two sees the other.
        if self._notify_event.is_set():
            endpoint.notify()
        return endpoint

    setup_heartbeat_endpoint.__doc__ = (
        "CallbackEndpoint.setup_heartbeat_endpoint, awake if the outcome came first "
        "(moto_launcher patch 6)."
    )
    setup_heartbeat_endpoint.__wrapped__ = original
    setup_heartbeat_endpoint.__moto_launcher_patch__ = True
    endpoint_cls.setup_heartbeat_endpoint = setup_heartbeat_endpoint


def exit_at_once(signum, frame):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def patch_signal_handler(server):
    # moto.server.main installs `signal_handler` by its module-global name when it runs.
    if callable(getattr(server, "signal_handler", None)):
        server.signal_handler = exit_at_once
    else:
        note("moto.server.signal_handler is gone; stopping moto will take its usual time")


def main(argv):
    try:
        import moto
    except ImportError as error:
        note(f"moto is not installed for {sys.executable} ({error}); pip install 'moto[server]'")
        return EXIT_PATCH_FAILED
    version = getattr(moto, "__version__", "unknown")
    if version != CHECKED_MOTO_VERSION:
        note(f"moto {version}; the patches were checked against {CHECKED_MOTO_VERSION}")

    try:
        patch_state_machine_deepcopy()
        patch_send_task_failure()
        patch_sqs_lambda_push()
        patch_cloudformation_state_machines()
        patch_dynamodb_one_request_at_a_time()
        patch_early_callback()
        from moto import server

        patch_signal_handler(server)
    except PatchError as error:
        note(f"cannot patch moto {version}: {error}")
        note("refusing to start an unpatched moto; see the notes at the top of this script")
        return EXIT_PATCH_FAILED

    server.main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
