/*
 * memwarden._lrucore: the hot paths of memwarden.cache.LRUCache in C.
 *
 * LRUBase is the base class of LRUCache.  Its get(), cache[key] and cache[key] = value
 * do what the Python versions in memwarden/cache.py (class _LRUBasePy) do, without a
 * Python frame: look the key up in the cache's OrderedDict, make it the most recently
 * used entry (OrderedDict.move_to_end), count a hit or a miss; and, for a cache bounded
 * by entry count only, insert under the cache's lock, evicting the least recently used
 * entry first.  Everything else (other bounds, __missing__, eviction callbacks, errors
 * that need a message) is delegated to the Python methods of the subclass, so the
 * behaviour is defined once, in Python.  Without this module (no compiler at install
 * time) _LRUBasePy serves.
 *
 * LRUCache attaches its OrderedDict and lock with _attach(); until then (or after
 * _attach with count_bound=-1) every write takes the Python path.
 *
 * Thread safety is the Python version's: lookups run without the cache's lock, holding
 * the GIL; only the dictionary operations may run Python code (a key's __eq__), so a key
 * evicted by another thread between the lookup and the move makes move_to_end raise
 * KeyError, which is reported as a miss.  Writes hold the cache's lock.  Replaced and
 * evicted entries are released after the lock is released.  The counters change only
 * while the GIL is held, so they are exact.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *od;           /* the cache's OrderedDict (owned), or NULL before _attach */
    PyObject *move_to_end;  /* od.move_to_end (owned) */
    PyObject *popitem;      /* od.popitem (owned) */
    PyObject *acquire;      /* lock.acquire (owned) */
    PyObject *release;      /* lock.release (owned) */
    Py_ssize_t count_bound; /* the fast insert path's bound, or -1 for the Python path */
    int notify;             /* call self._notify_one(key, value) for each eviction */
    Py_ssize_t hits;
    Py_ssize_t misses;
    Py_ssize_t evictions;
} LRUBaseObject;

/* Look key up and refresh it.  Returns a new reference, or NULL with no error set for a
 * miss, or NULL with an error set. */
static PyObject *
lookup(LRUBaseObject *self, PyObject *key)
{
    if (self->od == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "LRUBase: the cache is not attached");
        return NULL;
    }
    /* An OrderedDict is a dict subclass whose items live in the dict proper. */
    PyObject *value = PyDict_GetItemWithError(self->od, key);  /* borrowed */
    if (value == NULL) {
        if (!PyErr_Occurred()) {
            self->misses++;
        }
        return NULL;
    }
    Py_INCREF(value);  /* move_to_end may run Python code that drops the entry */
    PyObject *moved = PyObject_CallOneArg(self->move_to_end, key);
    if (moved == NULL) {
        Py_DECREF(value);
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();  /* evicted by another thread between the two steps: a miss */
            self->misses++;
        }
        return NULL;
    }
    Py_DECREF(moved);
    self->hits++;
    return value;
}

static PyObject *
lrubase_get(LRUBaseObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "get() takes 1 or 2 positional arguments (key, default) but %zd were given",
                     nargs);
        return NULL;
    }
    PyObject *value = lookup(self, args[0]);
    if (value == NULL && !PyErr_Occurred()) {
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    }
    return value;
}

static PyObject *
lrubase_subscript(LRUBaseObject *self, PyObject *key)
{
    PyObject *value = lookup(self, key);
    if (value == NULL && !PyErr_Occurred()) {
        return PyObject_CallMethod((PyObject *)self, "__missing__", "O", key);
    }
    return value;
}

/* The count-bounded insert under the lock.  Returns 0, or -1 with an error set.
 * *old and *dropped receive references for the caller to release after the lock. */
static int
insert_locked(LRUBaseObject *self, PyObject *key, PyObject *value, PyObject **old,
              PyObject **dropped)
{
    PyObject *od = self->od;
    PyObject *found = PyDict_GetItemWithError(od, key);  /* borrowed */
    if (found != NULL) {
        *old = Py_NewRef(found);
        if (PyObject_SetItem(od, key, value) < 0) {
            return -1;
        }
        PyObject *moved = PyObject_CallOneArg(self->move_to_end, key);
        if (moved == NULL) {
            return -1;
        }
        Py_DECREF(moved);
        return 0;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    Py_ssize_t n = PyObject_Length(od);
    if (n < 0) {
        return -1;
    }
    if (n >= self->count_bound) {
        /* Make room first, so that lock-free readers never see more than count_bound
         * entries.  popitem(False) pops the least recently used. */
        *dropped = PyObject_CallOneArg(self->popitem, Py_False);
        if (*dropped == NULL) {
            return -1;
        }
        self->evictions++;
    }
    return PyObject_SetItem(od, key, value);
}

static int
lrubase_ass_subscript(LRUBaseObject *self, PyObject *key, PyObject *value)
{
    PyObject *res;
    if (value == NULL) {
        res = PyObject_CallMethod((PyObject *)self, "_delitem", "O", key);
        Py_XDECREF(res);
        return res == NULL ? -1 : 0;
    }
    if (self->od == NULL || self->count_bound <= 0) {
        res = PyObject_CallMethod((PyObject *)self, "_setitem", "OO", key, value);
        Py_XDECREF(res);
        return res == NULL ? -1 : 0;
    }
    res = PyObject_CallNoArgs(self->acquire);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    PyObject *old = NULL;
    PyObject *dropped = NULL;
    int status = insert_locked(self, key, value, &old, &dropped);

    /* Release the lock whatever happened, keeping a pending error. */
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    res = PyObject_CallNoArgs(self->release);
    if (res == NULL) {
        status = -1;
        Py_XDECREF(exc_type);
        Py_XDECREF(exc_value);
        Py_XDECREF(exc_tb);
    }
    else {
        Py_DECREF(res);
        PyErr_Restore(exc_type, exc_value, exc_tb);
    }
    Py_XDECREF(old);  /* released outside the lock */
    if (status == 0 && dropped != NULL && self->notify) {
        if (!PyTuple_Check(dropped) || PyTuple_GET_SIZE(dropped) != 2) {
            PyErr_SetString(PyExc_SystemError, "OrderedDict.popitem() returned no pair");
            status = -1;
        }
        else {
            res = PyObject_CallMethod((PyObject *)self, "_notify_one", "OO",
                                      PyTuple_GET_ITEM(dropped, 0),
                                      PyTuple_GET_ITEM(dropped, 1));
            if (res == NULL) {
                status = -1;
            }
            Py_XDECREF(res);
        }
    }
    Py_XDECREF(dropped);
    return status;
}

static PyObject *
lrubase_attach(LRUBaseObject *self, PyObject *args)
{
    PyObject *od, *lock;
    Py_ssize_t count_bound;
    int notify;

    if (!PyArg_ParseTuple(args, "OOnp:_attach", &od, &lock, &count_bound, &notify)) {
        return NULL;
    }
    if (!PyODict_Check(od)) {
        PyErr_Format(PyExc_TypeError, "_attach(od=...): expected an OrderedDict, not %.100s",
                     Py_TYPE(od)->tp_name);
        return NULL;
    }
    PyObject *move_to_end = PyObject_GetAttrString(od, "move_to_end");
    PyObject *popitem = PyObject_GetAttrString(od, "popitem");
    PyObject *acquire = PyObject_GetAttrString(lock, "acquire");
    PyObject *release = PyObject_GetAttrString(lock, "release");
    if (move_to_end == NULL || popitem == NULL || acquire == NULL || release == NULL) {
        Py_XDECREF(move_to_end);
        Py_XDECREF(popitem);
        Py_XDECREF(acquire);
        Py_XDECREF(release);
        return NULL;
    }
    Py_XSETREF(self->od, Py_NewRef(od));
    Py_XSETREF(self->move_to_end, move_to_end);
    Py_XSETREF(self->popitem, popitem);
    Py_XSETREF(self->acquire, acquire);
    Py_XSETREF(self->release, release);
    self->count_bound = count_bound;
    self->notify = notify;
    Py_RETURN_NONE;
}

static int
lrubase_traverse(LRUBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->od);
    Py_VISIT(self->move_to_end);
    Py_VISIT(self->popitem);
    Py_VISIT(self->acquire);
    Py_VISIT(self->release);
    return 0;
}

static int
lrubase_clear(LRUBaseObject *self)
{
    Py_CLEAR(self->od);
    Py_CLEAR(self->move_to_end);
    Py_CLEAR(self->popitem);
    Py_CLEAR(self->acquire);
    Py_CLEAR(self->release);
    return 0;
}

static void
lrubase_dealloc(LRUBaseObject *self)
{
    PyObject_GC_UnTrack(self);
    (void)lrubase_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
lrubase_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    LRUBaseObject *self = (LRUBaseObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->count_bound = -1;
    return (PyObject *)self;
}

static PyMethodDef lrubase_methods[] = {
    {"get", (PyCFunction)(void (*)(void))lrubase_get, METH_FASTCALL,
     "get(key, default=None, /)\n--\n\n"
     "The value for key (refreshing it as most recently used), else default."},
    {"_attach", (PyCFunction)lrubase_attach, METH_VARARGS,
     "_attach(od, lock, count_bound, notify, /)\n--\n\n"
     "Bind the cache's OrderedDict and lock; count_bound -1 keeps writes in Python."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef lrubase_members[] = {
    {"_base_hits", T_PYSSIZET, offsetof(LRUBaseObject, hits), READONLY,
     "hits counted in C"},
    {"_base_misses", T_PYSSIZET, offsetof(LRUBaseObject, misses), READONLY,
     "misses counted in C"},
    {"_base_evictions", T_PYSSIZET, offsetof(LRUBaseObject, evictions), READONLY,
     "evictions made in C"},
    {NULL, 0, 0, 0, NULL},
};

static PyMappingMethods lrubase_as_mapping = {
    .mp_subscript = (binaryfunc)lrubase_subscript,
    .mp_ass_subscript = (objobjargproc)lrubase_ass_subscript,
};

PyDoc_STRVAR(lrubase_doc, "The hot paths of memwarden.cache.LRUCache in C (its base class).");

static PyTypeObject LRUBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "memwarden._lrucore.LRUBase",
    .tp_basicsize = sizeof(LRUBaseObject),
    .tp_dealloc = (destructor)lrubase_dealloc,
    .tp_as_mapping = &lrubase_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = lrubase_doc,
    .tp_traverse = (traverseproc)lrubase_traverse,
    .tp_clear = (inquiry)lrubase_clear,
    .tp_methods = lrubase_methods,
    .tp_members = lrubase_members,
    .tp_new = lrubase_new,
};

static struct PyModuleDef lrucore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memwarden._lrucore",
    .m_doc = "The hot paths of memwarden.cache.LRUCache in C (optional; see cache.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__lrucore(void)
{
    if (PyType_Ready(&LRUBaseType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&lrucore_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "LRUBase", (PyObject *)&LRUBaseType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
