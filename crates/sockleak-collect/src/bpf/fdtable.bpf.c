// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * iter/task_file program behind sockleak's eBPF fd table (src/bpf/mod.rs).
 *
 * The kernel calls it once per open file of every task; it writes one
 * fixed-size `struct fd_record` per fd of a thread-group leader with
 * bpf_seq_write. Userspace reads the iterator fd to EOF and decodes the
 * records (src/bpf/record.rs mirrors this layout: change both together).
 *
 * The kind is decided the way /proc/PID/fd link text is produced: by the
 * filesystem the file lives on (each pseudo filesystem's d_dname prints the
 * "socket:[", "pipe:[", "anon_inode:" or "net:[" prefix), so it agrees with
 * FdKind::classify of the link without building any text.
 *
 * Built by tools/bpf/build into fdtable.bpf.o, which is committed and
 * embedded with include_bytes!: building sockleak needs no clang.
 *
 * License: "Dual MIT/GPL" is GPL-compatible for the kernel (bpf_seq_write is
 * a GPL-only helper) and MIT is one of sockleak's own licenses.
 */
#include "kernel_types.h"

#define SEC(name) __attribute__((section(name), used))

/* Helper ids: include/uapi/linux/bpf.h, enum bpf_func_id. */
static long (*bpf_seq_write)(struct seq_file *m, const void *data, __u32 len) = (void *)127;
static struct socket *(*bpf_sock_from_file)(struct file *file) = (void *)162;

/* Superblock magics: include/uapi/linux/magic.h. */
#define SOCKFS_MAGIC 0x534F434B
#define PIPEFS_MAGIC 0x50495045
#define ANON_INODE_FS_MAGIC 0x09041934
#define NSFS_MAGIC 0x6e736673
/* pidfds (5.x: anon_inode, 6.9+: pidfs) both read "anon_inode:[pidfd]". */
#define PID_FS_MAGIC 0x50494446

/* Kinds: the values of bpf::record::KIND_* in Rust. */
#define KIND_FILE 0
#define KIND_SOCKET 1
#define KIND_PIPE 2
#define KIND_ANON 3
#define KIND_OTHER 4

/* 32 bytes, no implicit padding, native endianness. */
struct fd_record {
	__u32 tgid;
	__u32 fd;
	__u64 ino;
	__u16 family;   /* sockets: AF_*; 0 otherwise or when unknown */
	__u16 protocol; /* sockets: sk_protocol (IPPROTO_TCP=6, UDP=17; 0 for AF_UNIX) */
	__u8 kind;
	__u8 pad[3];
	/*
	 * The process's start (task->start_boottime, ns since boot): with the
	 * tgid it names one process, as /proc/PID/stat's starttime does (that
	 * field is this value in clock ticks), so a pid reused between this
	 * read and the /proc listing never joins a dead process's fds.
	 */
	__u64 start_ns;
};

SEC("iter/task_file")
int sockleak_fdtable(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct fd_record rec;
	struct inode *inode;
	unsigned long magic;

	/* The final call after the last task has task == NULL. */
	if (!task || !file)
		return 0;
	/*
	 * Only the thread-group leader's table, like the /proc walk (which reads
	 * /proc/TGID/fd). The iterator already skips threads that share their
	 * leader's table, but not a thread that unshare(CLONE_FILES)'d, nor the
	 * threads of a leader that exited (its files are gone, /proc/TGID/fd is
	 * empty).
	 */
	if (task->pid != task->tgid)
		return 0;

	__builtin_memset(&rec, 0, sizeof(rec));
	rec.tgid = task->tgid;
	rec.fd = ctx->fd;
	rec.start_ns = task->start_boottime;
	inode = file->f_inode;
	rec.ino = inode->i_ino;
	magic = inode->i_sb->s_magic;

	if (magic == SOCKFS_MAGIC) {
		struct socket *sock = bpf_sock_from_file(file);

		rec.kind = KIND_SOCKET;
		if (sock) {
			struct sock *sk = sock->sk;

			if (sk) {
				rec.family = sk->__sk_common.skc_family;
				rec.protocol = sk->sk_protocol;
			}
		}
	} else if (magic == PIPEFS_MAGIC) {
		rec.kind = KIND_PIPE;
	} else if (magic == ANON_INODE_FS_MAGIC || magic == PID_FS_MAGIC) {
		rec.kind = KIND_ANON;
	} else if (magic == NSFS_MAGIC) {
		rec.kind = KIND_OTHER;
	} else {
		rec.kind = KIND_FILE;
	}
	bpf_seq_write(seq, &rec, sizeof(rec));
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
