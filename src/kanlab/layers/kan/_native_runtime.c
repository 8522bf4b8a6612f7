/* The threads every native kernel splits its work over (kan_parts and kan_run, declared in
 * _native.h; used by _native.c and _native_gather.c): torch's own OpenMP runtime, whose entry
 * points native_build.py's loader hands to kan_runtime. The kernels' threads are then torch's
 * own, which spin a while after each parallel region; a second pool of threads would compete
 * with them for the cores (benchmarks/README.md). NULL: one thread. */
#include "_native.h"

static void (*omp_parallel)(void (*)(void *), void *, unsigned, unsigned);
static int (*omp_thread)(void), (*omp_threads)(void);

void kan_runtime(void *parallel, void *thread_num, void *num_threads) {
    omp_parallel = (void (*)(void (*)(void *), void *, unsigned, unsigned))parallel;
    omp_thread = (int (*)(void))thread_num;
    omp_threads = (int (*)(void))num_threads;
}

typedef struct {
    int (*range)(const void *args, int part, int64_t lo, int64_t hi);
    const void *args;
    int64_t total;
    int status;
} job_t;

static void job_part(void *p) {
    job_t *job = p;
    int t = omp_thread(), n = omp_threads();
    int status = job->range(job->args, t, job->total * t / n, job->total * (t + 1) / n);
    if (status) __atomic_store_n(&job->status, status, __ATOMIC_RELAXED);
}

int kan_parts(int64_t total, int threads) {
    if (threads <= 1 || total <= 1 || omp_parallel == NULL) return 1;
    return threads < total ? threads : (int)total;
}

int kan_run(int (*range)(const void *, int, int64_t, int64_t), const void *args, int64_t total, int threads) {
    int parts = kan_parts(total, threads);
    if (parts == 1) return range(args, 0, 0, total);
    job_t job = {range, args, total, 0};
    omp_parallel(job_part, &job, (unsigned)parts, 0);
    return job.status;
}
