package main

import (
	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls are system calls sandboxed Python never needs and that widen the kernel
// surface an escape would use: tracing other processes, mounting, loading kernel code or
// BPF programs, entering or creating namespaces, keyrings, raw handles to files, clocks,
// io_uring (which bypasses seccomp for the operations it queues), and the like. They
// fail with EPERM.
var deniedSyscalls = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"bpf", "perf_event_open", "userfaultfd", "lookup_dcookie",
	"setns", "unshare",
	"keyctl", "add_key", "request_key",
	"open_by_handle_at", "name_to_handle_at",
	"reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup",
	"sethostname", "setdomainname",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"iopl", "ioperm", "uselib",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// namespaceFlags are the clone flags that create namespaces; clone with any of them is
// denied, which also covers creating a user namespace (where the code would be root).
// CLONE_NEWTIME is left out: for clone it lies in the exit-signal byte, and a time
// namespace can only be made with clone3 or unshare, both denied.
const namespaceFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP

// seccompFilter returns the sandbox's filter: everything not listed is allowed. clone3
// fails with ENOSYS (its flags are in memory a filter cannot read), so the C library
// falls back to clone, whose flags are checked.
func seccompFilter() seccomp.Filter {
	return seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls: []seccomp.SyscallGroup{
				{Action: seccomp.ActionErrno, Names: deniedSyscalls},
				{
					Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS),
					Names:  []string{"clone3"},
				},
				{
					Action: seccomp.ActionErrno,
					NamesWithCondtions: []seccomp.NameWithConditions{{
						Name: "clone",
						Conditions: seccomp.ArgumentConditions{{
							Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags,
						}},
					}},
				},
			},
		},
	}
}
