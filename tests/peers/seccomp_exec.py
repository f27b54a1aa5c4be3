"""Run a program under a Docker-style seccomp profile (JSON), the way a container runtime would:
libseccomp (Debian's python3-seccomp) builds the filter from the profile's default action and its
allowed names, loads it, then execs the program. `--without NAME` leaves a call out of the allowed
list (e.g. io_uring_setup, as Docker's default profile does). Used by tests/operations.rs.

    /usr/bin/python3 tests/peers/seccomp_exec.py PROFILE.json [--without NAME]... -- PROGRAM ARGS...
"""
import errno
import json
import os
import sys

import seccomp


def main():
    args = sys.argv[1:]
    split = args.index("--")
    opts, program = args[:split], args[split + 1:]
    profile = json.load(open(opts[0]))
    without = {opts[i + 1] for i, a in enumerate(opts) if a == "--without"}
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(profile.get("defaultErrnoRet", errno.EPERM)))
    ops = {"SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ, "SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE}
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            action = seccomp.ALLOW
        elif rule["action"] == "SCMP_ACT_ERRNO":
            action = seccomp.ERRNO(rule.get("errnoRet", errno.EPERM))
        else:
            raise SystemExit(f"unsupported action {rule['action']}")
        # Docker's convention: for MASKED_EQ, value is the mask and valueTwo the datum.
        args = [seccomp.Arg(a["index"], ops[a["op"]], a["value"], a.get("valueTwo", 0)) for a in rule.get("args", [])]
        for name in rule["names"]:
            if name in without:
                continue
            try:
                f.add_rule(action, name, *args)
            except (RuntimeError, ValueError):
                pass  # not a system call on this architecture (as a container runtime skips it)
    f.load()
    os.execv(program[0], program)


if __name__ == "__main__":
    main()
