// A device timeline for any CUDA program without Nsight Systems: an LD_PRELOAD library that
// records, through CUPTI's activity API, every kernel, memcpy and memset the device ran (start
// and end on the device clock), every CUDA runtime call the host made (start and end, thread,
// and the correlation id that ties a launch to its kernel), synchronizations, and unified
// memory page faults and migrations; written as text when the process exits.
//
// Build (on a machine with the CUDA toolkit):
//   cc -O2 -shared -fPIC -o libcupti_trace.so tools/gpu/cupti_trace.c
//      -I/usr/local/cuda/include -L/usr/local/cuda/lib64 -lcupti -Wl,-rpath,/usr/local/cuda/lib64
// Use:
//   CUPTI_TRACE_OUT=/tmp/trace.txt LD_PRELOAD=$PWD/libcupti_trace.so PROGRAM ARGS
//   python3 tools/gpu/timeline.py /tmp/trace.txt
// The process must exit normally (return from main or exit(); a server on SIGTERM) for the
// records to be flushed. Lines (times in ns on CUPTI's clock, shared by host and device):
//   K start end stream correlation name          a kernel
//   C start end stream correlation bytes kind    a memcpy (kind: CUPTI's copy kind number)
//   S start end stream correlation bytes         a memset
//   A start end thread correlation name          a runtime API call on the host
//   D start end thread correlation name          a driver API call (cuBLAS launches through these)
//   Y start end stream type                      a synchronization (CUPTI's type number)
//   U kind start end value address               a unified memory counter record
#include <cupti.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE* g_out;

#define CHECK(call)                                                                   \
  do {                                                                                \
    CUptiResult r_ = (call);                                                          \
    if (r_ != CUPTI_SUCCESS) {                                                        \
      const char* s_ = "?";                                                           \
      cuptiGetResultString(r_, &s_);                                                  \
      fprintf(stderr, "cupti_trace: %s failed: %s (line %d)\n", #call, s_, __LINE__); \
    }                                                                                 \
  } while (0)

static void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  const size_t bytes = (size_t)8 << 20;
  *buffer = (uint8_t*)aligned_alloc(8, bytes);
  *size = *buffer ? bytes : 0;
  *max_records = 0;
}

static void write_record(const CUpti_Activity* rec) {
  switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
      const CUpti_ActivityKernel10* k = (const CUpti_ActivityKernel10*)rec;
      fprintf(g_out, "K %llu %llu %u %u %s\n", (unsigned long long)k->start,
              (unsigned long long)k->end, k->streamId, k->correlationId, k->name ? k->name : "?");
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const CUpti_ActivityMemcpy6* m = (const CUpti_ActivityMemcpy6*)rec;
      fprintf(g_out, "C %llu %llu %u %u %llu %u\n", (unsigned long long)m->start,
              (unsigned long long)m->end, m->streamId, m->correlationId,
              (unsigned long long)m->bytes, (unsigned)m->copyKind);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const CUpti_ActivityMemset4* m = (const CUpti_ActivityMemset4*)rec;
      fprintf(g_out, "S %llu %llu %u %u %llu\n", (unsigned long long)m->start,
              (unsigned long long)m->end, m->streamId, m->correlationId,
              (unsigned long long)m->bytes);
      break;
    }
    case CUPTI_ACTIVITY_KIND_RUNTIME:
    case CUPTI_ACTIVITY_KIND_DRIVER: {
      const CUpti_ActivityAPI* a = (const CUpti_ActivityAPI*)rec;
      const int runtime = rec->kind == CUPTI_ACTIVITY_KIND_RUNTIME;
      const char* name = "?";
      cuptiGetCallbackName(runtime ? CUPTI_CB_DOMAIN_RUNTIME_API : CUPTI_CB_DOMAIN_DRIVER_API,
                           a->cbid, &name);
      fprintf(g_out, "%c %llu %llu %u %u %s\n", runtime ? 'A' : 'D', (unsigned long long)a->start,
              (unsigned long long)a->end, a->threadId, a->correlationId, name ? name : "?");
      break;
    }
    case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
      const CUpti_ActivitySynchronization2* s = (const CUpti_ActivitySynchronization2*)rec;
      fprintf(g_out, "Y %llu %llu %u %u\n", (unsigned long long)s->start,
              (unsigned long long)s->end, s->streamId, (unsigned)s->type);
      break;
    }
    case CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER: {
      const CUpti_ActivityUnifiedMemoryCounter3* u =
          (const CUpti_ActivityUnifiedMemoryCounter3*)rec;
      fprintf(g_out, "U %u %llu %llu %llu %llx\n", (unsigned)u->counterKind,
              (unsigned long long)u->start, (unsigned long long)u->end,
              (unsigned long long)u->value, (unsigned long long)u->address);
      break;
    }
    default:
      break;
  }
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t* buffer, size_t size,
                                      size_t valid) {
  (void)ctx;
  (void)stream;
  (void)size;
  CUpti_Activity* rec = NULL;
  while (valid > 0 && cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (g_out) write_record(rec);
  }
  size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped) {
    fprintf(stderr, "cupti_trace: %zu records dropped\n", dropped);
  }
  free(buffer);
}

__attribute__((constructor)) static void start(void) {
  const char* path = getenv("CUPTI_TRACE_OUT");
  if (!path || !*path) return;
  g_out = fopen(path, "w");
  if (!g_out) {
    fprintf(stderr, "cupti_trace: cannot write %s\n", path);
    return;
  }
  CHECK(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
  CUpti_ActivityUnifiedMemoryCounterConfig um[4];
  const CUpti_ActivityUnifiedMemoryCounterKind kinds[4] = {
      CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_KIND_BYTES_TRANSFER_HTOD,
      CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_KIND_BYTES_TRANSFER_DTOH,
      CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_KIND_CPU_PAGE_FAULT_COUNT,
      CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_KIND_GPU_PAGE_FAULT};
  for (int i = 0; i < 4; ++i) {
    um[i].scope = CUPTI_ACTIVITY_UNIFIED_MEMORY_COUNTER_SCOPE_PROCESS_SINGLE_DEVICE;
    um[i].kind = kinds[i];
    um[i].deviceId = 0;
    um[i].enable = 1;
  }
  const char* um_env = getenv("CUPTI_TRACE_UM");
  if (!um_env || strcmp(um_env, "0") != 0) {
    CHECK(cuptiActivityConfigureUnifiedMemoryCounter(um, 4));
    CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_UNIFIED_MEMORY_COUNTER));
  }
  CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
  CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY));
  CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET));
  CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME));
  CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_DRIVER));
  CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_SYNCHRONIZATION));
}

__attribute__((destructor)) static void stop(void) {
  if (!g_out) return;
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  fclose(g_out);
  g_out = NULL;
}
