"""MW601 logger-per-call: positive cases carry `# expect: MW601`."""

import logging
import logging as lg
from logging import getLogger

log = logging.getLogger(__name__)
SUBSYSTEM = "app.db"


def per_request(request):
    a = logging.getLogger(f"app.request.{request.id}")  # expect: MW601
    b = lg.getLogger("job-" + str(request.id))  # expect: MW601
    c = getLogger(name="user.{}".format(request.user))  # expect: MW601
    return a, b, c


async def async_handler(task):
    return logging.getLogger(f"task.{task.id}")  # expect: MW601


def fine(obj):
    a = logging.getLogger(__name__)
    b = logging.getLogger("app.constant")
    c = logging.getLogger(f"{__name__}.sub")
    d = logging.getLogger(type(obj).__module__ + "." + type(obj).__qualname__)
    e = logging.getLogger()
    f = logging.getLogger(SUBSYSTEM)
    g = logging.getLogger(obj.name)  # a name passed through: the caller's existing names
    h = logging.getLogger("django.security.%s" % obj.__class__.__name__)  # bounded by classes
    return a, b, c, d, e, f, g, h


class Service:
    class Worker:
        def run(self, job_id):
            return logging.getLogger("worker.%s" % job_id)  # expect: MW601

        def named(self):
            return logging.getLogger(self.__class__.__name__)


computed_at_import = logging.getLogger("x" + str(1))  # module level: created once
