/* engine._hugepages: pymalloc's arenas on transparent huge pages.

An engine stores a snapshot by forking (engine/service/forked.py): the parent's loop stops for
the kernel's copy of its page tables, which grows with the process's memory (4 KiB pages: a
process holding a million resting orders, ~430 MB, forks in ~14 ms on a quiet machine, 40-240 ms
on a loaded one, and every symbol of the engine waits that long). Almost all of that memory
is pymalloc's arenas (CPython allocates them with one mmap each, never on huge pages). This
allocator hands pymalloc its arenas from 2 MiB-aligned regions marked MADV_HUGEPAGE, so
where the kernel's transparent huge pages are "madvise" or "always" one page-table entry maps
2 MiB and the fork copies ~1/512 of the entries for them. Requests of any other size (each
thread's 16 KiB frame-stack chunks use the same allocator), and the arenas made before
`install()`, go to and come back from CPython's own allocator. Called with the
GIL held (pymalloc's contract), so no lock of its own. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)
#define REGION ((size_t)64 << 20)
#define FREE_MAX 65536

static PyObjectArenaAllocator previous;
static int installed = 0;
/* pymalloc's ARENA_SIZE in CPython 3.11 on 64 bits (1 MiB arenas with its radix tree). Other
users of the arena allocator (each thread's 16 KiB frame stack chunks) go to CPython's own. */
static const size_t arena_size = (size_t)1 << 20;
static char *next_free = NULL, *region_end = NULL;
static uintptr_t lowest = UINTPTR_MAX, highest = 0;
static void *freed[FREE_MAX]; /* arenas given back, kept mapped (their pages dropped) */
static size_t n_freed = 0;
static size_t regions = 0;

static char *new_region(void) {
    size_t length = REGION + HUGE_PAGE;
    char *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    char *start = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (start > p) {
        munmap(p, (size_t)(start - p));
    }
    char *end = start + REGION;
    if (p + length > end) {
        munmap(end, (size_t)(p + length - end));
    }
    madvise(start, REGION, MADV_HUGEPAGE); /* a kernel without THP: plain pages, as before */
    regions++;
    if ((uintptr_t)start < lowest) {
        lowest = (uintptr_t)start;
    }
    if ((uintptr_t)end > highest) {
        highest = (uintptr_t)end;
    }
    return start;
}

static void *arena_alloc(void *ctx, size_t size) {
    (void)ctx;
    if (size != arena_size) {
        return previous.alloc(previous.ctx, size);
    }
    if (n_freed > 0) {
        return freed[--n_freed];
    }
    if (next_free == NULL || next_free + size > region_end) {
        char *start = new_region();
        if (start == NULL) {
            return previous.alloc(previous.ctx, size);
        }
        next_free = start;
        region_end = start + REGION;
    }
    void *arena = next_free;
    next_free += size;
    return arena;
}

/* An arena of the previous allocator that lies between two regions counts as ours: it is a
mapping of the same size, so keeping it for reuse (or unmapping it) is what its own free
would allow. */
static int ours(void *ptr, size_t size) {
    return size == arena_size && (uintptr_t)ptr >= lowest && (uintptr_t)ptr < highest;
}

static void arena_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    if (!ours(ptr, size)) {
        previous.free(previous.ctx, ptr, size);
        return;
    }
    if (n_freed < FREE_MAX) {
        madvise(ptr, size, MADV_DONTNEED); /* its memory goes back; the range is reused */
        freed[n_freed++] = ptr;
    } else {
        munmap(ptr, size);
    }
}

static PyObject *install(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    if (!installed) {
        PyObjectArenaAllocator ours_ = {NULL, arena_alloc, arena_free};
        PyObject_GetArenaAllocator(&previous);
        PyObject_SetArenaAllocator(&ours_);
        installed = 1;
    }
    Py_RETURN_TRUE;
}

static PyObject *stats(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return Py_BuildValue(
        "{s:O,s:n,s:n,s:n}", "installed", installed ? Py_True : Py_False, "arena_size",
        (Py_ssize_t)arena_size, "regions", (Py_ssize_t)regions, "freed", (Py_ssize_t)n_freed);
}

static PyMethodDef methods[] = {
    {"install", install, METH_NOARGS,
     "Give pymalloc its new arenas from huge-page regions from now on (idempotent)."},
    {"stats", stats, METH_NOARGS, "installed, arena_size, regions (of 64 MiB) mapped, freed arenas kept."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "engine._hugepages",
    "pymalloc's arenas on transparent huge pages (a cheaper fork).", -1, methods,
};

PyMODINIT_FUNC PyInit__hugepages(void) { return PyModule_Create(&module); }
