"""set_slice(pid, ns): the EEVDF slice (sched_attr.sched_runtime, SCHED_OTHER, Linux >= 6.12) of every
thread of pid; 0 gives the default back. get_slice(tid): the line of /proc/TID/sched that shows it."""
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
def set_slice(pid, ns):
    """EEVDF custom slice (sched_attr.sched_runtime, SCHED_OTHER) on every thread of pid; 0: the default."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        attr = struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, ns, 0, 0, 0, 0)
        buf = ctypes.create_string_buffer(attr, 56)
        if libc.syscall(314, int(tid), buf, 0) != 0:
            raise OSError(ctypes.get_errno(), "sched_setattr")
def get_slice(tid):
    with open(f"/proc/{tid}/sched") as f:
        for line in f:
            if "slice" in line: return line.strip()
