// Starting the programs tasker-local runs (function instances, unzip): fork + exec with an exact
// environment, output to a log file, a process group of their own, and no inherited descriptors.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace rstasker::local {

struct ChildSpec {
  std::vector<std::string> argv;      // argv[0] is the program's path (no PATH lookup)
  std::vector<std::string> env;       // "NAME=value" entries: the child's whole environment
  std::filesystem::path working_dir;  // unchanged when empty
  int output_fd = -1;                 // the child's stdout and stderr; /dev/null when -1
};

// Starts the child in a new process group (so killing the group takes its helpers along), with
// SIGKILL as its parent-death signal (delivered when the *thread* that called this exits, so call
// it from a thread that lives as long as the child should), default signal dispositions and an
// empty signal mask, stdin from /dev/null, and every descriptor but 0-2 closed. Returns the pid.
// Throws Error(InternalError) when fork fails, and Error("Runtime.InvalidEntrypoint") carrying
// exec's reason when the program cannot be executed.
pid_t start_child(const ChildSpec& spec);

// Sends `signal_number` (SIGKILL unless told) to the child's process group, and to the child
// should it have left the group.
void kill_child_group(pid_t pid, int signal_number = SIGKILL);

// Runs a helper program to completion with the given environment; returns its exit status (or
// 128 + signal), killing it after `timeout`. Its output goes to `output_fd` (-1: discarded).
int run_helper(const ChildSpec& spec, std::chrono::milliseconds timeout);

// How a wait status reads in Lambda's messages: "exit status 2", "signal: killed".
std::string describe_wait_status(int wait_status);

}  // namespace rstasker::local
