/* deploybench's native API: one small C ABI per framework, the same for every framework.
 *
 * The shared library libdeploybench_<framework>.so exports these functions; Python calls
 * them through ctypes (bench/native/library.py) and the C++ runner (src/runner_main.cpp)
 * links them, so both variants run exactly the same inference code.
 *
 * Buffers belong to the caller: `db_infer` reads the input where it lies and writes every
 * output into the caller's buffer, after checking that its size is right. Nothing here
 * allocates memory the caller must free, except the session (db_free).
 *
 * Errors: functions returning a pointer return NULL, those returning int return non-zero,
 * and write a NUL-terminated message into `err` (at most `err_len` bytes).
 */
#ifndef DEPLOYBENCH_H
#define DEPLOYBENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DB_API_VERSION 1
#define DB_MAX_RANK 8

typedef struct db_session db_session;

/* The ABI version of this library; callers refuse a library of another version. */
int db_api_version(void);

/* The framework's own version string (static storage). */
const char* db_framework_version(void);

/* Load and compile a model for the CPU with `threads` intra-op threads. `config` is
 * "KEY=VALUE" pairs separated by ';' passed to the framework (empty: none). */
db_session* db_load(const char* model_path, int threads, const char* config, char* err,
                    size_t err_len);

/* Run the model on one float32 input of shape `shape[0..rank)` (C order). Outputs are
 * float32, written to outputs[i], which holds capacity[i] elements; the shape of each output
 * is written to out_shapes[i * DB_MAX_RANK ...] and its rank to out_ranks[i]. */
int db_infer(db_session* session, const float* input, const int64_t* shape, int rank,
             int n_outputs, float* const* outputs, const int64_t* capacity,
             int64_t* out_shapes, int* out_ranks, char* err, size_t err_len);

/* What the framework reports it runs, as a JSON object: precision_run, threads, ... */
int db_runtime_info(db_session* session, char* json, size_t json_len);

void db_free(db_session* session);

#ifdef __cplusplus
}
#endif

#endif
