// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * tp_btf/inet_sock_set_state program behind sockleak's TCP state tracker
 * (src/bpf/changes.rs): the building block for watch samples that follow
 * state changes instead of dumping every socket again (issue 6).
 *
 * The kernel calls it on every TCP state change, in whatever context the
 * change happens (often softirq: the task then is not the socket's owner,
 * see the kernel notes). It records, per socket cookie, the state before the
 * first change since userspace last drained the map, the latest state, the
 * time, the network namespace and the 4-tuple: enough for userspace to look
 * the socket up with an exact sock_diag request in that namespace. A socket
 * that closes loses its local port before its last event (unhashed), so a
 * tuple once recorded is kept rather than overwritten with zeros.
 *
 * When the map is full the change is counted in `lost`: userspace must then
 * fall back to a full dump, never trust a partial picture.
 *
 * Built by tools/bpf/build into statechg.bpf.o (committed). Types are
 * declared here with preserve_access_index: CO-RE relocations against the
 * kernel's BTF fix the offsets at load; only names and sizes matter.
 */
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
/* include/linux/ns_common.h, include/net/net_namespace.h */
struct ns_common {
	unsigned int inum;
};
struct net {
	struct ns_common ns;
};
typedef struct {
	struct net *net;
} possible_net_t;
/* include/uapi/linux/in6.h */
struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__u32 u6_addr32[4];
	} in6_u;
};
/* include/net/sock.h (the anonymous unions as the kernel nests them) */
struct sock_common {
	union {
		__u64 skc_addrpair;
		struct {
			__u32 skc_daddr;
			__u32 skc_rcv_saddr;
		};
	};
	union {
		__u32 skc_portpair;
		struct {
			__u16 skc_dport; /* network order */
			__u16 skc_num;   /* host order */
		};
	};
	unsigned short skc_family;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};
struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
};
#pragma clang attribute pop

/* include/uapi/linux/bpf.h: map types, helper ids. */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_NOEXIST 1
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_get_socket_cookie)(void *sk) = (void *)46;

#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#define IPPROTO_TCP 6
#define AF_INET6 10

/* 56 bytes, no implicit padding: src/bpf/changes.rs decodes it. */
struct change {
	__u32 netns;    /* nsfs inode of the socket's network namespace */
	__u16 family;   /* AF_INET or AF_INET6 */
	__u16 sport;    /* host order; 0 when only seen unhashed */
	__u16 dport;    /* host order */
	__u8 oldstate;  /* before the first change since the last drain */
	__u8 newstate;  /* after the latest change */
	__u32 changes;  /* changes since the last drain */
	__u64 at_ns;    /* CLOCK_MONOTONIC of the latest change */
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct change);
} changed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static void read_tuple(struct sock *sk, struct change *c)
{
	c->sport = sk->__sk_common.skc_num;
	c->dport = __builtin_bswap16(sk->__sk_common.skc_dport);
	if (c->family == AF_INET6) {
		for (int i = 0; i < 4; i++) {
			((__u32 *)c->saddr)[i] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[i];
			((__u32 *)c->daddr)[i] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[i];
		}
	} else {
		((__u32 *)c->saddr)[0] = sk->__sk_common.skc_rcv_saddr;
		((__u32 *)c->daddr)[0] = sk->__sk_common.skc_daddr;
	}
}

SEC("tp_btf/inet_sock_set_state")
int sockleak_statechg(unsigned long long *ctx)
{
	/* TP_PROTO(const struct sock *sk, const int oldstate, const int newstate) */
	struct sock *sk = (struct sock *)ctx[0];
	int oldstate = (int)ctx[1];
	int newstate = (int)ctx[2];
	struct change *seen;
	struct change c;
	__u64 cookie;

	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	seen = bpf_map_lookup_elem(&changed, &cookie);
	if (seen) {
		seen->newstate = newstate;
		seen->changes += 1;
		seen->at_ns = bpf_ktime_get_ns();
		if (sk->__sk_common.skc_num != 0 && seen->sport == 0)
			read_tuple(sk, seen);
		return 0;
	}
	__builtin_memset(&c, 0, sizeof(c));
	c.netns = sk->__sk_common.skc_net.net->ns.inum;
	c.family = sk->__sk_common.skc_family;
	c.oldstate = oldstate;
	c.newstate = newstate;
	c.changes = 1;
	c.at_ns = bpf_ktime_get_ns();
	read_tuple(sk, &c);
	if (bpf_map_update_elem(&changed, &cookie, &c, BPF_NOEXIST) != 0) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);

		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
