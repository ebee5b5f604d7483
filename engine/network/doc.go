// Package network owns the networks of standalone (Docker API) containers:
// the network objects, the containers' endpoints on them, published ports,
// the containers' /etc/hosts and /etc/resolv.conf, and the DNS responder
// of user-defined networks (package resolver).
//
// # Networks
//
// Every network is a record under Config.Root/networks. The predefined
// ones are made on first start: "bridge" (the default network, kernel
// bridge Config.DefaultBridge, subnet Config.DefaultSubnet or the first
// free one of the pools; no DNS by name, as Docker's), "host" and "none".
// A user-defined network is a bridge with its own subnet (given, or the
// first subnet of Config.AddressPools that neither another network nor a
// host route covers), written as a CNI conflist in Config.Root/conf (never
// the node's /etc/cni/net.d) using the pinned plugins bridge + host-local
// (leases in Config.Root/ipam). Create makes the bridge with its gateway
// address, the isolation, forwarding and masquerading rules (firewall.go)
// and the DNS listener at once; the default bridge is made on first use.
// Published ports are DNAT rules of the manager's (publish.go), written
// and removed in one iptables-restore each.
//
// # The engine's contract
//
//	Register(ctx, Container)        at create: mode, networks, ports, DNS.
//	                                Refuses bad input as Docker's create.
//	Attach(ctx, AttachRequest)      at start, once the sandbox exists: one
//	                                CNI ADD per network (eth0, eth1, ...),
//	                                ports published on the first endpoint
//	                                that is not internal, hosts and
//	                                resolv.conf written, names served.
//	                                All or nothing.
//	Detach(ctx, id)                 at stop or exit (before the namespace
//	                                is unpinned): DEL of every endpoint;
//	                                the configuration stays. Idempotent.
//	Unregister(ctx, id)             at removal: Detach, then forget.
//	Rename(ctx, id, name)           at rename (DNS follows).
//	Settings(id)                    NetworkSettings' content for inspect.
//	Files(id)                       the hosts and resolv.conf content.
//	GC(ctx, keep)                   at start-up, after the engine loaded
//	                                its records: forget the others.
//
// Connect and Disconnect (the /networks API) work on created and running
// containers alike: a created container's connections hold when it starts
// (compose connects before it starts). host, none and container: modes are
// registered too (container: has no endpoints; inspect and network
// inspect show host and none as Docker does).
//
// # Crash safety
//
// Records are written atomically after each change. Open reconciles: a
// removal (or a creation, which is recorded as a removal until complete)
// a crash interrupted is finished; bridges, rules and listeners of the
// networks are put back; containers whose namespace is gone are detached;
// libcni cache entries and host-local leases that no record owns are
// freed; bridges of this root (found by their alias) whose network is gone
// are deleted.
//
// Errors carry containerd/errdefs classes and Docker's wording: NotFound
// ("network x not found"), Conflict (a duplicate name, an address in use,
// a port already allocated), PermissionDenied for what Docker answers 403
// (predefined networks, a network with active endpoints, overlapping
// pools, connecting twice), InvalidArgument for bad input.
package network
