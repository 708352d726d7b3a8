/* SPDX-License-Identifier: MIT OR GPL-2.0 */
/*
 * The few kernel types fdtable.bpf.c reads, declared by hand instead of a
 * multi-megabyte vmlinux.h.
 *
 * Every struct carries preserve_access_index, so clang records each field
 * access as a CO-RE relocation (type name + field name) and the loader (aya)
 * rewrites the offsets against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux). The layouts below therefore need only the right
 * field NAMES and SIZES, never the right offsets or the other members.
 * Field sizes match every kernel the program can load on (>= 5.11, the first
 * with bpf_sock_from_file): sk_protocol became a full u16 in 5.6.
 */
#ifndef SOCKLEAK_KERNEL_TYPES_H
#define SOCKLEAK_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct seq_file;

/* include/linux/bpf.h */
struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

/* kernel/bpf/task_iter.c: the context of an iter/task_file program. The
 * kernel wraps each pointer in a union (__bpf_md_ptr) padded to 8 bytes. */
struct bpf_iter__task_file {
	union {
		struct bpf_iter_meta *meta;
	};
	union {
		struct task_struct *task;
	};
	__u32 fd;
	union {
		struct file *file;
	};
};

/* include/linux/sched.h */
struct task_struct {
	__s32 pid;  /* thread id, initial pid namespace */
	__s32 tgid; /* process id, initial pid namespace */
	__u64 start_boottime; /* ns since boot; /proc/PID/stat starttime in clock ticks (5.5+) */
};

/* include/linux/fs.h */
struct super_block {
	unsigned long s_magic;
};

struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
	struct super_block *i_sb;
};

struct file {
	struct inode *f_inode;
};

/* include/net/sock.h */
struct sock_common {
	unsigned short skc_family;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
};

/* include/linux/net.h */
struct socket {
	struct sock *sk;
};

#pragma clang attribute pop

#endif
