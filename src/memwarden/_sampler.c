/*
 * memwarden._sampler: a sampling heap profiler built on the PEP 445 allocator hooks.
 *
 * The hooks wrap the RAW, MEM and OBJ domains and chain to the allocators that were
 * installed before them.  Allocations are sampled by bytes with a Poisson process: every
 * thread keeps a countdown of bytes drawn from an exponential distribution of mean
 * `interval`; the allocation that takes the countdown below zero is sampled (probability
 * 1 - exp(-size / interval)) and carries the inverse-probability weight
 * size / (1 - exp(-size / interval)), so sums of weights are unbiased estimates of bytes.
 *
 * A sample records the Python stack (innermost first, up to max_frames), the context tag
 * (the value of a contextvars.ContextVar installed by memwarden.profiler) and the native
 * thread id, interned into a table of stacks.  Each stack keeps its allocation totals
 * since start and its live totals; live sampled blocks are tracked by pointer so that
 * free and realloc take them out again.  On every new high of the estimated live heap
 * (beyond a step) the per-stack live totals are copied: that copy is the peak profile.
 *
 * Invariants (read these before changing anything):
 *
 * - Re-entrancy: `tl_busy` (thread-local) is set while this thread samples or exports.
 *   Allocations made meanwhile go straight to the previous allocator and are never
 *   sampled, so sampling never recurses.  Frees are always checked against the live
 *   table, even while busy, so that a sampled block freed at any time leaves the table.
 * - The GIL: the stack walk, the context tag read and every reference count change
 *   happen only when this thread holds the GIL (`holds_gil()`).  RAW-domain calls may
 *   come without it (that is the point of the RAW domain): those samples are recorded
 *   under the reserved "<no GIL>" stack without touching any Python object.
 *   `g_walk` (the frame buffer of a stack walk) is protected by the GIL.
 * - `g_lock` protects every table below and the counters next to them.  Code that holds
 *   it never calls into Python, never calls a hooked allocator (our tables come from
 *   the C library's malloc, which the hooks do not see), and never waits for the GIL, so
 *   a thread holding it always finishes.  Python objects are built only after copying
 *   the data out and releasing the lock.
 * - The filter `g_filter` (a counting filter over live sampled pointers) is read
 *   without the lock on every free: a zero slot proves that the pointer was never
 *   sampled, so the common free costs one hash and one load.  It is written under the
 *   lock.  A pointer's slot is incremented before the block is returned to the program,
 *   which publishes it to any thread that later frees the block.
 * - Memory: every table has a fixed capacity chosen at start; overflow is counted and
 *   reported by stats(), never grown.
 * - Fork: pthread_atfork takes the lock before fork and releases it in both processes,
 *   so the child never inherits a lock held by a thread that does not exist there.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if PY_VERSION_HEX >= 0x030D0000
#define MW_UNCHECKED_TSTATE() PyThreadState_GetUnchecked()
#else
#define MW_UNCHECKED_TSTATE() _PyThreadState_UncheckedGet()
#endif

#define MW_MAX_FRAMES_LIMIT 256
#define MW_FILTER_BITS 19
#define MW_FILTER_SIZE (1u << MW_FILTER_BITS)
#define MW_EMPTY UINT32_MAX

/* Reserved stack ids: samples without the GIL, and samples that found the stack table
 * or the frame pool full. */
#define MW_STACK_NO_GIL 0u
#define MW_STACK_OVERFLOW 1u
#define MW_STACK_RESERVED 2u

#define MW_STACK_TRUNCATED 1u

typedef struct {
    PyObject *filename;     /* strong reference, released by clear() */
    PyObject *name;         /* strong reference, released by clear() */
    int lineno;
} mw_frame;

typedef struct {
    uint64_t hash;
    unsigned long thread_id;
    uint32_t frame_off;     /* index of the innermost frame in g_pool */
    uint16_t depth;
    uint16_t flags;
    uint32_t tag;
    uint64_t alloc_samples;
    uint64_t alloc_bytes;   /* sum of weights (estimated bytes) */
    double alloc_var;       /* sum of w * (w - size): variance of the estimate */
    uint64_t live_samples;
    uint64_t live_bytes;
    double live_var;
} mw_stack;

typedef struct {
    uint64_t samples;
    uint64_t bytes;
    double var;
} mw_counts;

typedef struct {
    uintptr_t ptr;          /* 0: empty slot */
    size_t size;
    uint32_t stack;
} mw_live;

typedef struct {
    PyMemAllocatorEx prev;
    int domain;
} mw_domain;

/* --- state protected by g_lock ------------------------------------------------ */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static mw_frame *g_frames;          /* append-only until clear() */
static uint32_t *g_frame_index;     /* open addressing: frame ids */
static uint32_t g_frame_cap, g_frame_count, g_frame_index_mask;

static uint32_t *g_pool;            /* frame ids of all stacks, back to back */
static uint32_t g_pool_cap, g_pool_used;

static mw_stack *g_stacks;
static uint32_t *g_stack_index;
static uint32_t g_stack_cap, g_stack_count, g_stack_index_mask;
static mw_counts *g_peak;           /* per-stack live totals at the peak */
static uint32_t g_peak_stack_count;

static mw_live *g_live;
static uint32_t g_live_cap, g_live_count, g_live_mask;

static uint64_t g_live_total;       /* estimated live bytes (sum of live weights) */
static uint64_t g_peak_total;       /* g_live_total when g_peak was copied */
static uint64_t g_peak_copies;
static uint64_t g_samples, g_samples_no_gil, g_dropped_stacks, g_dropped_live;
static uint64_t g_frees_tracked;

static double g_interval = 524288.0;
static int g_max_frames = 64;

/* --- state protected by the GIL ----------------------------------------------- */

static int g_running;               /* read without the GIL by the hooks: atomic */
static uint32_t g_generation;       /* bumped by start(): resets per-thread countdowns */
static PyObject *g_tag_var;         /* contextvars.ContextVar holding an int tag id */
/* Buffers of one sample's stack walk (kept off the C stack of small threads). */
static PyFrameObject *g_walk_frames[MW_MAX_FRAMES_LIMIT];
static PyObject *g_walk_names[MW_MAX_FRAMES_LIMIT][2];
static int g_walk_lines[MW_MAX_FRAMES_LIMIT];
static uint32_t g_walk_ids[MW_MAX_FRAMES_LIMIT];
static uint8_t g_walk_new[MW_MAX_FRAMES_LIMIT];
static mw_domain g_raw = {.domain = PYMEM_DOMAIN_RAW};
static mw_domain g_mem = {.domain = PYMEM_DOMAIN_MEM};
static mw_domain g_obj = {.domain = PYMEM_DOMAIN_OBJ};
static int g_atfork_registered;

/* --- lock-free state ---------------------------------------------------------- */

static uint8_t g_filter[MW_FILTER_SIZE];
static uint64_t g_seed_counter;

static _Thread_local int tl_busy;
static _Thread_local int64_t tl_countdown;
static _Thread_local uint32_t tl_generation;
static _Thread_local uint64_t tl_rng;

/* --- helpers ------------------------------------------------------------------ */

static inline uint64_t
mix64(uint64_t x)
{
    /* splitmix64 finaliser: a cheap, well-distributed hash. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static inline uint32_t
filter_slot(uintptr_t ptr)
{
    return (uint32_t)((((uint64_t)ptr >> 4) * 0x9e3779b97f4a7c15ULL) >> (64 - MW_FILTER_BITS));
}

static inline double
next_uniform(void)
{
    /* xorshift64*, seeded per thread: only statistical quality matters here. */
    uint64_t x = tl_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tl_rng = x;
    return ((double)((x * 0x2545f4914f6cdd1dULL) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static inline int64_t
draw_countdown(void)
{
    double d = -log(next_uniform()) * g_interval;
    if (d < 1.0) {
        return 1;
    }
    if (d > 9.0e18) {
        return INT64_MAX;
    }
    return (int64_t)d;
}

/* True when this thread holds the GIL and has a thread state with which Python
 * objects may be touched.  PyGILState_Check() alone answers 1 when the check is
 * disabled (sub-interpreters) or before the thread-state key exists. */
static int
holds_gil(void)
{
    PyThreadState *ts = MW_UNCHECKED_TSTATE();
    return ts != NULL && ts == PyGILState_GetThisThreadState();
}

/* --- tables (caller holds g_lock) -------------------------------------------- */

static uint32_t
intern_frame(PyObject *filename, PyObject *name, int lineno)
{
    uint64_t h = mix64((uint64_t)(uintptr_t)filename ^ mix64((uint64_t)(uintptr_t)name)
                       ^ ((uint64_t)(uint32_t)lineno << 1));
    uint32_t i = (uint32_t)h & g_frame_index_mask;
    for (;;) {
        uint32_t id = g_frame_index[i];
        if (id == MW_EMPTY) {
            break;
        }
        mw_frame *f = &g_frames[id];
        if (f->filename == filename && f->name == name && f->lineno == lineno) {
            return id;
        }
        i = (i + 1) & g_frame_index_mask;
    }
    if (g_frame_count >= g_frame_cap) {
        return MW_EMPTY;
    }
    uint32_t id = g_frame_count++;
    /* The references are taken by the caller, which holds the GIL (see sample()). */
    g_frames[id].filename = filename;
    g_frames[id].name = name;
    g_frames[id].lineno = lineno;
    g_frame_index[i] = id;
    return id;
}

static uint32_t
intern_stack(const uint32_t *frames, int depth, uint16_t flags, uint32_t tag,
             unsigned long thread_id)
{
    uint64_t h = mix64(((uint64_t)tag << 32) ^ (uint64_t)thread_id ^ flags);
    for (int k = 0; k < depth; k++) {
        h = mix64(h ^ frames[k]);
    }
    uint32_t i = (uint32_t)h & g_stack_index_mask;
    for (;;) {
        uint32_t id = g_stack_index[i];
        if (id == MW_EMPTY) {
            break;
        }
        mw_stack *s = &g_stacks[id];
        if (s->hash == h && s->depth == depth && s->tag == tag && s->flags == flags
            && s->thread_id == thread_id
            && memcmp(&g_pool[s->frame_off], frames, sizeof(uint32_t) * (size_t)depth) == 0)
        {
            return id;
        }
        i = (i + 1) & g_stack_index_mask;
    }
    if (g_stack_count >= g_stack_cap || g_pool_used + (uint32_t)depth > g_pool_cap) {
        return MW_EMPTY;
    }
    uint32_t id = g_stack_count++;
    mw_stack *s = &g_stacks[id];
    memset(s, 0, sizeof(*s));
    s->hash = h;
    s->thread_id = thread_id;
    s->frame_off = g_pool_used;
    s->depth = (uint16_t)depth;
    s->flags = flags;
    s->tag = tag;
    memcpy(&g_pool[g_pool_used], frames, sizeof(uint32_t) * (size_t)depth);
    g_pool_used += (uint32_t)depth;
    g_stack_index[i] = id;
    return id;
}

static inline uint64_t
weight_of(size_t size)
{
    double s = (double)size;
    double p = -expm1(-s / g_interval);
    double w = p > 0.0 ? s / p : g_interval;
    return (uint64_t)(w + 0.5);
}

static void
copy_peak(void)
{
    for (uint32_t k = 0; k < g_stack_count; k++) {
        g_peak[k].samples = g_stacks[k].live_samples;
        g_peak[k].bytes = g_stacks[k].live_bytes;
        g_peak[k].var = g_stacks[k].live_var;
    }
    g_peak_stack_count = g_stack_count;
    g_peak_total = g_live_total;
    g_peak_copies++;
}

static void
live_insert(uintptr_t ptr, size_t size, uint32_t stack_id, uint64_t w, double var)
{
    mw_stack *s = &g_stacks[stack_id];
    s->alloc_samples++;
    s->alloc_bytes += w;
    s->alloc_var += var;
    /* Linear probing is kept below 3/4 full so that probes stay short. */
    if ((uint64_t)g_live_count * 4 >= (uint64_t)g_live_cap * 3) {
        g_dropped_live++;
        return;
    }
    uint32_t i = (uint32_t)mix64(ptr) & g_live_mask;
    while (g_live[i].ptr != 0) {
        if (g_live[i].ptr == ptr) {
            /* A stale entry (the block was freed through an allocator we do not see,
             * e.g. while the hooks were briefly swapped): replace it. */
            mw_stack *old = &g_stacks[g_live[i].stack];
            uint64_t ow = weight_of(g_live[i].size);
            old->live_samples--;
            old->live_bytes -= ow;
            old->live_var -= (double)ow * ((double)ow - (double)g_live[i].size);
            g_live_total -= ow;
            g_live_count--;
            break;
        }
        i = (i + 1) & g_live_mask;
    }
    if (g_live[i].ptr == 0) {
        uint32_t slot = filter_slot(ptr);
        uint8_t c = __atomic_load_n(&g_filter[slot], __ATOMIC_RELAXED);
        if (c < 255) {
            __atomic_store_n(&g_filter[slot], (uint8_t)(c + 1), __ATOMIC_RELEASE);
        }
    }
    g_live[i].ptr = ptr;
    g_live[i].size = size;
    g_live[i].stack = stack_id;
    g_live_count++;
    s->live_samples++;
    s->live_bytes += w;
    s->live_var += var;
    g_live_total += w;
    /* A new high beyond the step is copied: the peak profile lags the true sampled
     * peak by less than max(2 intervals, 1% of the peak). */
    uint64_t step = (uint64_t)(2.0 * g_interval);
    if (g_peak_total / 100 > step) {
        step = g_peak_total / 100;
    }
    if (g_live_total > g_peak_total + step) {
        copy_peak();
    }
}

/* Removes `ptr` from the live table if it is there.  Caller holds g_lock. */
static void
live_remove(uintptr_t ptr)
{
    if (g_live == NULL) {
        return;
    }
    uint32_t i = (uint32_t)mix64(ptr) & g_live_mask;
    while (g_live[i].ptr != ptr) {
        if (g_live[i].ptr == 0) {
            return;
        }
        i = (i + 1) & g_live_mask;
    }
    mw_live *e = &g_live[i];
    mw_stack *s = &g_stacks[e->stack];
    uint64_t w = weight_of(e->size);
    s->live_samples--;
    s->live_bytes -= w;
    s->live_var -= (double)w * ((double)w - (double)e->size);
    g_live_total -= w;
    g_live_count--;
    g_frees_tracked++;
    uint32_t slot = filter_slot(ptr);
    uint8_t c = g_filter[slot];
    if (c > 0 && c < 255) {
        __atomic_store_n(&g_filter[slot], (uint8_t)(c - 1), __ATOMIC_RELEASE);
    }
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    uint32_t hole = i;
    uint32_t j = (i + 1) & g_live_mask;
    while (g_live[j].ptr != 0) {
        uint32_t home = (uint32_t)mix64(g_live[j].ptr) & g_live_mask;
        if (((j - home) & g_live_mask) >= ((j - hole) & g_live_mask)) {
            g_live[hole] = g_live[j];
            hole = j;
        }
        j = (j + 1) & g_live_mask;
    }
    g_live[hole].ptr = 0;
}

/* --- sampling ----------------------------------------------------------------- */

/* Walks the Python stack of this thread into g_walk_frames.  Needs the GIL.
 * Returns the depth and sets *truncated. */
static int
walk_stack(PyThreadState *ts, int *truncated)
{
    int depth = 0;
    *truncated = 0;
    PyFrameObject *frame = PyThreadState_GetFrame(ts);
    while (frame != NULL) {
        if (depth == g_max_frames) {
            *truncated = 1;
            Py_DECREF(frame);
            break;
        }
        g_walk_frames[depth++] = frame;
        frame = PyFrame_GetBack(frame);
    }
    return depth;
}

static void
sample(void *ptr, size_t size)
{
    unsigned long thread_id = PyThread_get_thread_native_id();
    uint64_t w = weight_of(size);
    double var = (double)w * ((double)w - (double)size);
    int depth = 0;
    int truncated = 0;
    uint32_t tag = 0;
    int gil = holds_gil();

    if (gil) {
        /* The walk may materialise frame objects (an allocation; not sampled since
         * tl_busy is set).  A garbage collection started by it could run finalisers
         * that release the GIL while g_walk_frames is in use: keep it off meanwhile.
         * The error indicator is saved because PyThreadState_GetFrame clears it when
         * it cannot create a frame object. */
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *exc = PyErr_GetRaisedException();
#else
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
#endif
        int gc_was_enabled = PyGC_Disable();
        PyThreadState *ts = MW_UNCHECKED_TSTATE();
        depth = walk_stack(ts, &truncated);
        if (g_tag_var != NULL) {
            PyObject *value = NULL;
            if (PyContextVar_Get(g_tag_var, NULL, &value) == 0 && value != NULL) {
                long t = PyLong_Check(value) ? PyLong_AsLong(value) : 0;
                tag = t > 0 && t < (long)UINT32_MAX ? (uint32_t)t : 0;
                Py_DECREF(value);
            }
            PyErr_Clear();
        }
        for (int k = 0; k < depth; k++) {
            PyFrameObject *f = g_walk_frames[k];
            PyCodeObject *code = PyFrame_GetCode(f);
            g_walk_names[k][0] = code->co_filename;
#if PY_VERSION_HEX >= 0x030B0000
            g_walk_names[k][1] = code->co_qualname;
#else
            g_walk_names[k][1] = code->co_name;
#endif
            /* Borrowed from the code object, which the frame keeps alive until the
             * DECREFs below; references for the table are taken under the lock. */
            Py_INCREF(g_walk_names[k][0]);
            Py_INCREF(g_walk_names[k][1]);
            g_walk_lines[k] = PyFrame_GetLineNumber(f);
            Py_DECREF(code);
            Py_DECREF(f);
        }
        if (gc_was_enabled) {
            PyGC_Enable();
        }
#if PY_VERSION_HEX >= 0x030C0000
        PyErr_SetRaisedException(exc);
#else
        PyErr_Restore(et, ev, etb);
#endif

        pthread_mutex_lock(&g_lock);
        if (g_live == NULL) {
            pthread_mutex_unlock(&g_lock);
            for (int k = 0; k < depth; k++) {
                Py_DECREF(g_walk_names[k][0]);
                Py_DECREF(g_walk_names[k][1]);
            }
            return;
        }
        int ok = 1;
        for (int k = 0; k < depth; k++) {
            uint32_t before = g_frame_count;
            g_walk_ids[k] = intern_frame(g_walk_names[k][0], g_walk_names[k][1], g_walk_lines[k]);
            g_walk_new[k] = g_frame_count != before;
            if (g_walk_ids[k] == MW_EMPTY) {
                ok = 0;
            }
        }
        uint32_t stack_id = MW_EMPTY;
        if (ok) {
            stack_id = intern_stack(g_walk_ids, depth, truncated ? MW_STACK_TRUNCATED : 0, tag,
                                    thread_id);
        }
        if (stack_id == MW_EMPTY) {
            stack_id = MW_STACK_OVERFLOW;
            g_dropped_stacks++;
        }
        g_samples++;
        live_insert((uintptr_t)ptr, size, stack_id, w, var);
        pthread_mutex_unlock(&g_lock);
        /* The table keeps the references of frames it interned just now; the others
         * are given back (DECREF of a string the table also holds frees nothing). */
        for (int k = 0; k < depth; k++) {
            if (!g_walk_new[k]) {
                Py_DECREF(g_walk_names[k][0]);
                Py_DECREF(g_walk_names[k][1]);
            }
        }
        return;
    }

    pthread_mutex_lock(&g_lock);
    if (g_live != NULL) {
        g_samples++;
        g_samples_no_gil++;
        live_insert((uintptr_t)ptr, size, MW_STACK_NO_GIL, w, var);
    }
    pthread_mutex_unlock(&g_lock);
}

/* Called after every successful allocation of `size` bytes at `ptr`. */
static inline void
maybe_sample(void *ptr, size_t size)
{
    if (tl_busy || !__atomic_load_n(&g_running, __ATOMIC_RELAXED)) {
        return;
    }
    tl_countdown -= (int64_t)size;
    if (tl_countdown > 0) {
        return;
    }
    uint32_t gen = __atomic_load_n(&g_generation, __ATOMIC_RELAXED);
    if (tl_generation != gen) {
        /* First allocation of this thread since start(): seed and draw afresh. */
        tl_generation = gen;
        tl_rng = mix64((uint64_t)(uintptr_t)&tl_busy
                       ^ __atomic_add_fetch(&g_seed_counter, 0x9e3779b97f4a7c15ULL,
                                            __ATOMIC_RELAXED));
        if (tl_rng == 0) {
            tl_rng = 1;
        }
        tl_countdown = draw_countdown() - (int64_t)size;
        if (tl_countdown > 0) {
            return;
        }
    }
    tl_countdown = draw_countdown();
    tl_busy = 1;
    sample(ptr, size);
    tl_busy = 0;
}

/* Called before every free (and for the old block of a realloc). */
static inline void
forget(void *ptr)
{
    if (ptr == NULL
        || __atomic_load_n(&g_filter[filter_slot((uintptr_t)ptr)], __ATOMIC_ACQUIRE) == 0)
    {
        return;
    }
    pthread_mutex_lock(&g_lock);
    live_remove((uintptr_t)ptr);
    pthread_mutex_unlock(&g_lock);
}

/* --- the hooks ---------------------------------------------------------------- */

static void *
hook_malloc(void *ctx, size_t size)
{
    mw_domain *d = (mw_domain *)ctx;
    /* pymalloc serves large requests with PyMem_RawMalloc, i.e. through our RAW hook:
     * the guard keeps that inner call from being counted a second time. */
    int busy = tl_busy;
    tl_busy = 1;
    void *ptr = d->prev.malloc(d->prev.ctx, size);
    tl_busy = busy;
    if (ptr != NULL) {
        maybe_sample(ptr, size);
    }
    return ptr;
}

static void *
hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
    mw_domain *d = (mw_domain *)ctx;
    int busy = tl_busy;
    tl_busy = 1;
    void *ptr = d->prev.calloc(d->prev.ctx, nelem, elsize);
    tl_busy = busy;
    if (ptr != NULL) {
        /* The product does not overflow: the allocator just succeeded. */
        maybe_sample(ptr, nelem * elsize);
    }
    return ptr;
}

static void *
hook_realloc(void *ctx, void *ptr, size_t new_size)
{
    mw_domain *d = (mw_domain *)ctx;
    /* The old block leaves the table first: once realloc returns, another thread may
     * already receive the same address from malloc.  (Should realloc fail, the old
     * block stays allocated but untracked: a rare, small undercount.) */
    forget(ptr);
    int busy = tl_busy;
    tl_busy = 1;
    void *ptr2 = d->prev.realloc(d->prev.ctx, ptr, new_size);
    tl_busy = busy;
    if (ptr2 != NULL) {
        maybe_sample(ptr2, new_size);
    }
    return ptr2;
}

static void
hook_free(void *ctx, void *ptr)
{
    mw_domain *d = (mw_domain *)ctx;
    forget(ptr);
    d->prev.free(d->prev.ctx, ptr);
}

/* --- tables: allocation, clearing --------------------------------------------- */

static uint32_t
pow2_at_least(uint64_t n)
{
    uint32_t p = 1024;
    while (p < n && p < (1u << 30)) {
        p <<= 1;
    }
    return p;
}

/* Releases every table and the references the frame table holds.  Needs the GIL and
 * the hooks uninstalled (a DECREF may free, and freeing must not find a half-cleared
 * table under a hook: the tables are swapped out under the lock first). */
static void
release_tables(void)
{
    pthread_mutex_lock(&g_lock);
    mw_frame *frames = g_frames;
    uint32_t nframes = g_frame_count;
    void *others[6] = {g_frame_index, g_pool, g_stacks, g_stack_index, g_peak, g_live};
    g_frames = NULL;
    g_frame_index = NULL;
    g_pool = NULL;
    g_stacks = NULL;
    g_stack_index = NULL;
    g_peak = NULL;
    g_live = NULL;
    g_frame_count = g_stack_count = g_live_count = g_pool_used = 0;
    g_frame_cap = g_stack_cap = g_live_cap = g_pool_cap = 0;
    g_peak_stack_count = 0;
    g_live_total = g_peak_total = 0;
    g_samples = g_samples_no_gil = g_dropped_stacks = g_dropped_live = 0;
    g_peak_copies = g_frees_tracked = 0;
    memset(g_filter, 0, sizeof(g_filter));
    pthread_mutex_unlock(&g_lock);
    for (int k = 0; k < 6; k++) {
        free(others[k]);
    }
    if (frames != NULL) {
        for (uint32_t k = 0; k < nframes; k++) {
            Py_DECREF(frames[k].filename);
            Py_DECREF(frames[k].name);
        }
        free(frames);
    }
}

static int
alloc_tables(uint32_t max_stacks, uint32_t max_live, uint32_t max_frames_total)
{
    uint32_t frame_cap = max_frames_total;
    uint32_t frame_index_cap = pow2_at_least((uint64_t)frame_cap * 2);
    uint32_t stack_index_cap = pow2_at_least((uint64_t)max_stacks * 2);
    uint32_t live_cap = pow2_at_least((uint64_t)max_live * 4 / 3 + 1);
    uint32_t pool_cap = max_stacks * 16u;

    /* calloc of large blocks maps zero pages: only the pages used count in RSS. */
    mw_frame *frames = calloc(frame_cap, sizeof(mw_frame));
    uint32_t *frame_index = malloc(sizeof(uint32_t) * frame_index_cap);
    uint32_t *pool = calloc(pool_cap, sizeof(uint32_t));
    mw_stack *stacks = calloc(max_stacks, sizeof(mw_stack));
    uint32_t *stack_index = malloc(sizeof(uint32_t) * stack_index_cap);
    mw_counts *peak = calloc(max_stacks, sizeof(mw_counts));
    mw_live *live = calloc(live_cap, sizeof(mw_live));
    if (!frames || !frame_index || !pool || !stacks || !stack_index || !peak || !live) {
        free(frames);
        free(frame_index);
        free(pool);
        free(stacks);
        free(stack_index);
        free(peak);
        free(live);
        PyErr_NoMemory();
        return -1;
    }
    memset(frame_index, 0xff, sizeof(uint32_t) * frame_index_cap);
    memset(stack_index, 0xff, sizeof(uint32_t) * stack_index_cap);

    pthread_mutex_lock(&g_lock);
    g_frames = frames;
    g_frame_index = frame_index;
    g_frame_cap = frame_cap;
    g_frame_index_mask = frame_index_cap - 1;
    g_pool = pool;
    g_pool_cap = pool_cap;
    g_stacks = stacks;
    g_stack_index = stack_index;
    g_stack_cap = max_stacks;
    g_stack_index_mask = stack_index_cap - 1;
    g_peak = peak;
    g_live = live;
    g_live_cap = live_cap;
    g_live_mask = live_cap - 1;
    /* The reserved stacks have no frames and are never looked up by key. */
    for (uint32_t k = 0; k < MW_STACK_RESERVED; k++) {
        memset(&g_stacks[k], 0, sizeof(mw_stack));
        g_stacks[k].hash = k;
    }
    g_stack_count = MW_STACK_RESERVED;
    pthread_mutex_unlock(&g_lock);
    return 0;
}

/* --- fork --------------------------------------------------------------------- */

static void
atfork_prepare(void)
{
    pthread_mutex_lock(&g_lock);
}

static void
atfork_parent(void)
{
    pthread_mutex_unlock(&g_lock);
}

static void
atfork_child(void)
{
    /* Only the forking thread exists in the child, and it held the lock. */
    pthread_mutex_init(&g_lock, NULL);
}

/* --- Python functions --------------------------------------------------------- */

static void
install_hooks(void)
{
    mw_domain *domains[3] = {&g_raw, &g_mem, &g_obj};
    for (int k = 0; k < 3; k++) {
        PyMemAllocatorEx alloc = {
            .ctx = domains[k],
            .malloc = hook_malloc,
            .calloc = hook_calloc,
            .realloc = hook_realloc,
            .free = hook_free,
        };
        PyMem_GetAllocator(domains[k]->domain, &domains[k]->prev);
        PyMem_SetAllocator(domains[k]->domain, &alloc);
    }
}

static void
uninstall_hooks(void)
{
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &g_obj.prev);
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &g_mem.prev);
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &g_raw.prev);
}

PyDoc_STRVAR(start_doc,
"start(interval_bytes, max_frames, max_stacks, max_live, max_frame_entries, tag_var)\n\n"
"Clear the tables and install the allocator hooks.");

static PyObject *
sampler_start(PyObject *self, PyObject *args)
{
    double interval;
    int max_frames;
    unsigned int max_stacks, max_live, max_frame_entries;
    PyObject *tag_var;
    if (!PyArg_ParseTuple(args, "diIIIO", &interval, &max_frames, &max_stacks, &max_live,
                          &max_frame_entries, &tag_var))
    {
        return NULL;
    }
    if (g_running) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler is already running");
        return NULL;
    }
    if (!(interval >= 1.0) || max_frames < 1 || max_frames > MW_MAX_FRAMES_LIMIT
        || max_stacks < 16 || max_stacks > (1u << 24) || max_live < 16
        || max_live > (1u << 26) || max_frame_entries < 16 || max_frame_entries > (1u << 26))
    {
        PyErr_SetString(PyExc_ValueError, "sampler limits out of range");
        return NULL;
    }
    if (tag_var != Py_None && !PyContextVar_CheckExact(tag_var)) {
        PyErr_SetString(PyExc_TypeError, "tag_var must be a contextvars.ContextVar or None");
        return NULL;
    }
    if (!g_atfork_registered) {
        if (pthread_atfork(atfork_prepare, atfork_parent, atfork_child) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return NULL;
        }
        g_atfork_registered = 1;
    }
    release_tables();
    if (alloc_tables(max_stacks, max_live, max_frame_entries) < 0) {
        return NULL;
    }
    Py_XINCREF(tag_var == Py_None ? NULL : tag_var);
    Py_XSETREF(g_tag_var, tag_var == Py_None ? NULL : tag_var);
    g_interval = interval;
    g_max_frames = max_frames;
    __atomic_add_fetch(&g_generation, 1, __ATOMIC_RELAXED);
    install_hooks();
    __atomic_store_n(&g_running, 1, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *
sampler_stop(PyObject *self, PyObject *unused)
{
    if (g_running) {
        __atomic_store_n(&g_running, 0, __ATOMIC_RELEASE);
        uninstall_hooks();
    }
    Py_RETURN_NONE;
}

static PyObject *
sampler_is_running(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(g_running);
}

static PyObject *
sampler_clear(PyObject *self, PyObject *unused)
{
    if (g_running) {
        PyErr_SetString(PyExc_RuntimeError, "stop the sampler before clearing it");
        return NULL;
    }
    release_tables();
    Py_CLEAR(g_tag_var);
    Py_RETURN_NONE;
}

static PyObject *
sampler_reset_peak(PyObject *self, PyObject *unused)
{
    pthread_mutex_lock(&g_lock);
    if (g_peak != NULL) {
        copy_peak();
    }
    pthread_mutex_unlock(&g_lock);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(snapshot_doc,
"snapshot(kind) -> (frames, stacks, rows)\n\n"
"kind is 'live', 'allocations' or 'peak'.  frames: list of (filename, name, lineno);\n"
"stacks: list of (frame ids innermost first, tag id, thread id, flags) for every stack\n"
"id; rows: list of (stack id, samples, estimated bytes, variance) with samples > 0.\n"
"Stack ids 0 and 1 are reserved: samples taken without the GIL, and overflow.");

typedef struct {
    uint32_t stack;
    mw_counts counts;
} mw_row;

static PyObject *
sampler_snapshot(PyObject *self, PyObject *arg)
{
    const char *kind = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    int which;
    if (kind != NULL && strcmp(kind, "live") == 0) {
        which = 0;
    }
    else if (kind != NULL && strcmp(kind, "allocations") == 0) {
        which = 1;
    }
    else if (kind != NULL && strcmp(kind, "peak") == 0) {
        which = 2;
    }
    else {
        PyErr_Format(PyExc_ValueError,
                     "kind must be 'live', 'allocations' or 'peak', not %R", arg);
        return NULL;
    }
    PyObject *result = NULL, *frames_list = NULL, *stacks_list = NULL, *rows_list = NULL;
    mw_frame *frames = NULL;
    mw_stack *stacks = NULL;
    uint32_t *pool = NULL;
    mw_row *rows = NULL;
    uint32_t nframes = 0, nstacks = 0, npool = 0, nrows = 0;
    int busy = tl_busy;
    tl_busy = 1;

    /* Copy out under the lock with the C library's malloc (never through a hook while
     * the lock is held); build Python objects afterwards. */
    pthread_mutex_lock(&g_lock);
    if (g_stacks != NULL) {
        nframes = g_frame_count;
        nstacks = g_stack_count;
        npool = g_pool_used;
        frames = malloc(sizeof(mw_frame) * (nframes + 1));
        stacks = malloc(sizeof(mw_stack) * (nstacks + 1));
        pool = malloc(sizeof(uint32_t) * (npool + 1));
        rows = malloc(sizeof(mw_row) * (nstacks + 1));
        if (frames && stacks && pool && rows) {
            memcpy(frames, g_frames, sizeof(mw_frame) * nframes);
            memcpy(stacks, g_stacks, sizeof(mw_stack) * nstacks);
            memcpy(pool, g_pool, sizeof(uint32_t) * npool);
            uint32_t limit = which == 2 ? g_peak_stack_count : nstacks;
            for (uint32_t k = 0; k < limit; k++) {
                mw_counts c;
                if (which == 0) {
                    c.samples = g_stacks[k].live_samples;
                    c.bytes = g_stacks[k].live_bytes;
                    c.var = g_stacks[k].live_var;
                }
                else if (which == 1) {
                    c.samples = g_stacks[k].alloc_samples;
                    c.bytes = g_stacks[k].alloc_bytes;
                    c.var = g_stacks[k].alloc_var;
                }
                else {
                    c = g_peak[k];
                }
                if (c.samples > 0) {
                    rows[nrows].stack = k;
                    rows[nrows].counts = c;
                    nrows++;
                }
            }
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (g_stacks != NULL && !(frames && stacks && pool && rows)) {
        PyErr_NoMemory();
        goto done;
    }

    frames_list = PyList_New(nframes);
    stacks_list = PyList_New(nstacks);
    rows_list = PyList_New(nrows);
    if (frames_list == NULL || stacks_list == NULL || rows_list == NULL) {
        goto done;
    }
    for (uint32_t k = 0; k < nframes; k++) {
        PyObject *t = Py_BuildValue("(OOi)", frames[k].filename, frames[k].name,
                                    frames[k].lineno);
        if (t == NULL) {
            goto done;
        }
        PyList_SET_ITEM(frames_list, k, t);
    }
    for (uint32_t k = 0; k < nstacks; k++) {
        mw_stack *s = &stacks[k];
        PyObject *ids = PyTuple_New(s->depth);
        if (ids == NULL) {
            goto done;
        }
        for (uint16_t j = 0; j < s->depth; j++) {
            PyObject *v = PyLong_FromUnsignedLong(pool[s->frame_off + j]);
            if (v == NULL) {
                Py_DECREF(ids);
                goto done;
            }
            PyTuple_SET_ITEM(ids, j, v);
        }
        PyObject *t = Py_BuildValue("(NkkI)", ids, (unsigned long)s->tag, s->thread_id,
                                    (unsigned int)s->flags);
        if (t == NULL) {
            goto done;
        }
        PyList_SET_ITEM(stacks_list, k, t);
    }
    for (uint32_t k = 0; k < nrows; k++) {
        mw_row *r = &rows[k];
        PyObject *t = Py_BuildValue("(IKKd)", r->stack, (unsigned long long)r->counts.samples,
                                    (unsigned long long)r->counts.bytes,
                                    r->counts.var > 0.0 ? r->counts.var : 0.0);
        if (t == NULL) {
            goto done;
        }
        PyList_SET_ITEM(rows_list, k, t);
    }
    result = PyTuple_Pack(3, frames_list, stacks_list, rows_list);

done:
    Py_XDECREF(frames_list);
    Py_XDECREF(stacks_list);
    Py_XDECREF(rows_list);
    free(frames);
    free(stacks);
    free(pool);
    free(rows);
    tl_busy = busy;
    return result;
}

static PyObject *
sampler_stats(PyObject *self, PyObject *unused)
{
    uint64_t v[20];
    pthread_mutex_lock(&g_lock);
    v[0] = g_samples;
    v[1] = g_samples_no_gil;
    v[2] = g_dropped_stacks;
    v[3] = g_dropped_live;
    v[4] = g_frame_count;
    v[5] = g_frame_cap;
    v[6] = g_stack_count;
    v[7] = g_stack_cap;
    v[8] = g_pool_used;
    v[9] = g_pool_cap;
    v[10] = g_live_count;
    v[11] = g_live_cap;
    v[12] = g_live_total;
    v[13] = g_peak_total;
    v[14] = g_peak_copies;
    v[15] = g_frees_tracked;
    v[16] = (uint64_t)g_frame_cap * sizeof(mw_frame)
            + ((uint64_t)g_frame_index_mask + 1) * sizeof(uint32_t)
            + (uint64_t)g_pool_cap * sizeof(uint32_t)
            + (uint64_t)g_stack_cap * (sizeof(mw_stack) + sizeof(mw_counts))
            + ((uint64_t)g_stack_index_mask + 1) * sizeof(uint32_t)
            + (uint64_t)g_live_cap * sizeof(mw_live) + sizeof(g_filter);
    pthread_mutex_unlock(&g_lock);
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsdsi}",
        "samples", v[0], "samples_without_gil", v[1], "dropped_stacks", v[2],
        "dropped_live", v[3], "frames", v[4], "frame_capacity", v[5], "stacks", v[6],
        "stack_capacity", v[7], "frame_pool_used", v[8], "frame_pool_capacity", v[9],
        "live_samples", v[10], "live_capacity", v[11], "live_bytes", v[12],
        "peak_bytes", v[13], "peak_copies", v[14], "frees_tracked", v[15],
        "own_memory_bytes", v[16], "interval_bytes", g_interval, "max_frames", g_max_frames);
}

/* --- test-only entry points ------------------------------------------------------- */

PyDoc_STRVAR(test_raw_nogil_doc,
"_test_raw_alloc_nogil(count, size, keep) -> list[int]\n\n"
"Test hook: allocate count blocks of size bytes with PyMem_RawMalloc after releasing\n"
"the GIL.  Blocks are freed at once unless keep is true; kept blocks are returned as\n"
"addresses for _test_raw_free.");

static PyObject *
sampler_test_raw_alloc_nogil(PyObject *self, PyObject *args)
{
    Py_ssize_t count, size;
    int keep;
    if (!PyArg_ParseTuple(args, "nnp", &count, &size, &keep)) {
        return NULL;
    }
    if (count < 0 || size < 1) {
        PyErr_SetString(PyExc_ValueError, "count must be >= 0 and size >= 1");
        return NULL;
    }
    void **kept = keep ? calloc((size_t)count + 1, sizeof(void *)) : NULL;
    if (keep && kept == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < count; k++) {
        void *p = PyMem_RawMalloc((size_t)size);
        if (p == NULL) {
            failed++;
            continue;
        }
        memset(p, 1, (size_t)size);
        if (keep) {
            kept[k] = p;
        }
        else {
            PyMem_RawFree(p);
        }
    }
    Py_END_ALLOW_THREADS
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        goto fail;
    }
    for (Py_ssize_t k = 0; keep && k < count; k++) {
        if (kept[k] == NULL) {
            continue;
        }
        PyObject *v = PyLong_FromVoidPtr(kept[k]);
        if (v == NULL || PyList_Append(out, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(out);
            goto fail;
        }
        kept[k] = NULL;
        Py_DECREF(v);
    }
    free(kept);
    if (failed) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    return out;

fail:
    for (Py_ssize_t k = 0; keep && k < count; k++) {
        PyMem_RawFree(kept[k]);
    }
    free(kept);
    return NULL;
}

static PyObject *
sampler_test_raw_free(PyObject *self, PyObject *addresses)
{
    PyObject *seq = PySequence_Fast(addresses, "addresses must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    void **ptrs = calloc((size_t)n + 1, sizeof(void *));
    if (ptrs == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        ptrs[k] = PyLong_AsVoidPtr(PySequence_Fast_GET_ITEM(seq, k));
        if (ptrs[k] == NULL && PyErr_Occurred()) {
            free(ptrs);
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n; k++) {
        PyMem_RawFree(ptrs[k]);
    }
    Py_END_ALLOW_THREADS
    free(ptrs);
    Py_RETURN_NONE;
}

static PyMethodDef sampler_methods[] = {
    {"start", sampler_start, METH_VARARGS, start_doc},
    {"stop", sampler_stop, METH_NOARGS, "Uninstall the hooks; the tables are kept."},
    {"is_running", sampler_is_running, METH_NOARGS, "True while the hooks are installed."},
    {"clear", sampler_clear, METH_NOARGS, "Free the tables (the sampler must be stopped)."},
    {"reset_peak", sampler_reset_peak, METH_NOARGS, "Make the current live heap the peak."},
    {"snapshot", sampler_snapshot, METH_O, snapshot_doc},
    {"stats", sampler_stats, METH_NOARGS, "Counters and capacities of the tables."},
    {"_test_raw_alloc_nogil", sampler_test_raw_alloc_nogil, METH_VARARGS, test_raw_nogil_doc},
    {"_test_raw_free", sampler_test_raw_free, METH_O, "Test hook: PyMem_RawFree each address."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sampler_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memwarden._sampler",
    .m_doc = "Native sampling heap profiler (PEP 445 allocator hooks); see memwarden.profiler.",
    .m_size = -1,
    .m_methods = sampler_methods,
};

PyMODINIT_FUNC
PyInit__sampler(void)
{
    PyObject *m = PyModule_Create(&sampler_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_FRAMES_LIMIT", MW_MAX_FRAMES_LIMIT) < 0
        || PyModule_AddIntConstant(m, "STACK_NO_GIL", MW_STACK_NO_GIL) < 0
        || PyModule_AddIntConstant(m, "STACK_OVERFLOW", MW_STACK_OVERFLOW) < 0
        || PyModule_AddIntConstant(m, "STACK_TRUNCATED", MW_STACK_TRUNCATED) < 0)
    {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
