// What the servers' main() functions share (knn-coordinator, knn-worker): flag-name spelling,
// termination signals, and the one-line log format. Used only by *_main.cc files.
#ifndef KNNCLUSTER_RPC_SERVER_MAIN_H_
#define KNNCLUSTER_RPC_SERVER_MAIN_H_

#include <csignal>
#include <string>
#include <vector>

namespace knncluster::rpc {

// absl flag names cannot contain '-', but the documented spelling is --data-dir. Rewrites the
// name part of every "-name[=value]" / "--name[=value]" argument before the first bare "--" so
// that '-' and '_' are interchangeable. Returns an argv (null-terminated) backed by *storage.
std::vector<char*> NormalizeFlagNames(int argc, char** argv, std::vector<std::string>* storage);

// Blocks SIGINT and SIGTERM in the calling thread and in every thread started after it (gRPC's
// inherit the mask), so that WaitForTerminationSignal can take them with sigwait on the main
// thread and shutdown runs as ordinary code, not in a signal handler. Call before starting
// threads.
sigset_t BlockTerminationSignals();
// Waits for one of the blocked signals; returns its number.
int WaitForTerminationSignal(const sigset_t& signals);

// Caps glibc's malloc arenas at max(2, cores) unless MALLOC_ARENA_MAX is set (glibc's default is
// 8 per core). gRPC's sync servers run each call on whichever thread is free, so with the default
// every thread soon holds its own arena and freed memory stays spread over them: under a steady
// load RSS kept creeping up (+11..19% over a minute in tests/load); with the cap it stays flat.
// Also fixes the mmap threshold at 1 MiB and the trim threshold at 8 MiB (unless
// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ are set): glibc's default raises the mmap
// threshold to the size of any mapped block freed, so after a shard's 12 MiB staging buffer every
// later buffer up to that size came from the heap and stayed there. Worker peak RSS, fitting
// uniform3d then blobs16d (1,000,000 x 3 and 200,000 x 16 over 2 workers), 3 runs: 63-86 MiB
// after uniform3d and 81-102 after both before; 62-68 and 76-83 after; search CPU unchanged
// (the 8 MiB trim threshold keeps a batch's buffers in the heap: with glibc's 128 KiB one the
// workers spent ~1-2 core-ms more per batch of 10,000 faulting them back in).
// Returns the cap set (0: left to the environment or not glibc).
int LimitMallocArenas();

enum class LogLevel { kInfo, kWarning, kError };

// One line per event on stderr: "<local time with ms> <LEVEL> <program>: <line>", LEVEL being
// INFO, WARN or ERROR; line feeds in `line` become spaces, so an event is always one line.
void LogLine(const char* program, LogLevel level, const std::string& line);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_SERVER_MAIN_H_
