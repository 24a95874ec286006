#!/usr/bin/env python3
"""Start moto's server with the two Step Functions fixes the local stack depends on.

Usage: moto_launcher.py [moto_server arguments...]   (e.g. -H 127.0.0.1 -p 5123)

The arguments go unchanged to moto.server.main, so this behaves like `moto_server` except for
the patches below. Both were found and checked against moto 5.2.1; each patch first checks that
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

Besides the fixes, the launcher makes SIGTERM and SIGINT end the server at once. moto's own
handler exits through interpreter finalization, which spends about two seconds garbage-collecting
moto's modules; a test that starts and stops moto pays that every time, and nothing in moto needs
finalizing. This one only saves time, so if moto.server.signal_handler has moved it is skipped
with a note.

If a later moto fixes a bug itself (StateMachine defining its own __deepcopy__, or a handler
that already reads "cause"), the corresponding patch is left out and a note is printed.
"""

import ast
import copy
import importlib.util
import inspect
import os
import sys

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


def function_parameters(module_name, class_name, function_name, patch):
    """Parameter names of a method, read from the module's source without importing it.

    Importing moto's executing Step Functions backend costs seconds (its ASL parser), and moto
    itself imports it only once execution is enabled; every moto start would pay otherwise.
    """
    try:
        spec = importlib.util.find_spec(module_name)
    except ImportError as error:
        raise PatchError(f"{patch}: cannot find {module_name} ({error})") from error
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise PatchError(f"{patch}: no Python source for {module_name}")
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read(), filename=spec.origin)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == function_name:
                    args = item.args
                    return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
            raise PatchError(f"{patch}: {module_name}.{class_name} has no {function_name}")
    raise PatchError(f"{patch}: {module_name} has no class {class_name}")


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
