package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

const (
	// udpBuffer is each UDP socket's receive buffer.
	udpBuffer = 4 << 20
	// udpPoll is how often a blocked UDP read looks whether the listener
	// is closing, should the shutdown that wakes it be missed.
	udpPoll = 2 * time.Second
	// maxTCPConns bounds the TCP connections of one listener.
	maxTCPConns = 256
	// tcpIdle closes a TCP connection that sends nothing for this long.
	tcpIdle = 10 * time.Second
	// backoffMax bounds the wait between restarts of a failing listener.
	backoffMax = 5 * time.Second
)

// listener serves one address, UDP and TCP, and restarts itself.
type listener struct {
	s      *Server
	addr   netip.Addr
	ensure func() error
	stop   chan struct{}
	done   chan struct{}
	// restarts counts the times the sockets were opened again.
	restarts int
	mu       sync.Mutex
}

// Listen serves addr:53 (UDP and TCP) until Unlisten. The first bind
// happens before Listen returns, and its error is returned. Later, when a
// socket fails or the listener stops answering its probe, ensure (if not
// nil) is called to repair what the address needs (the bridge and its
// gateway address) and the sockets are opened again, with a backoff.
func (s *Server) Listen(addr netip.Addr, ensure func() error) error {
	addr = addr.Unmap()
	s.mu.Lock()
	if _, ok := s.listeners[addr]; ok {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	l := &listener{s: s, addr: addr, ensure: ensure, stop: make(chan struct{}), done: make(chan struct{})}
	socks, err := l.bind()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if _, ok := s.listeners[addr]; ok {
		s.mu.Unlock()
		socks.close()
		return nil
	}
	s.listeners[addr] = l
	s.setOurs(addr, true)
	s.mu.Unlock()
	go l.run(socks)
	return nil
}

// Unlisten stops serving addr and waits until its sockets are closed.
func (s *Server) Unlisten(addr netip.Addr) {
	addr = addr.Unmap()
	s.mu.Lock()
	l := s.listeners[addr]
	delete(s.listeners, addr)
	s.setOurs(addr, false)
	s.mu.Unlock()
	if l != nil {
		close(l.stop)
		<-l.done
	}
}

// Close stops every listener.
func (s *Server) Close() {
	for _, a := range s.Listening() {
		s.Unlisten(a)
	}
}

// Listening returns the addresses served.
func (s *Server) Listening() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.Addr, 0, len(s.listeners))
	for a := range s.listeners {
		out = append(out, a)
	}
	return out
}

// Restarts returns how many times addr's sockets were opened again.
func (s *Server) Restarts(addr netip.Addr) int {
	s.mu.Lock()
	l := s.listeners[addr.Unmap()]
	s.mu.Unlock()
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.restarts
}

// setOurs records addr as one of the server's own (s.mu held).
func (s *Server) setOurs(addr netip.Addr, on bool) {
	next := map[netip.Addr]bool{}
	for a := range *s.ours.Load() {
		next[a] = true
	}
	if on {
		next[addr] = true
	} else {
		delete(next, addr)
	}
	s.ours.Store(&next)
}

// sockets are one incarnation of a listener. The UDP socket is a blocking
// one, read by a goroutine locked to its thread: a query wakes that thread
// directly instead of going through the netpoller and the scheduler, which
// takes about a third off a lookup's round trip (tens of microseconds, as
// much as the rest of the path through the veth and the bridge).
type sockets struct {
	udp *udpSocket
	tcp *net.TCPListener
}

func (k sockets) close() {
	if k.udp != nil {
		k.udp.close()
	}
	if k.tcp != nil {
		k.tcp.Close()
	}
}

// udpSocket is a blocking UDP socket bound to one address.
type udpSocket struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

func listenUDP(ap netip.AddrPort) (*udpSocket, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpBuffer)
	tv := unix.NsecToTimeval(udpPoll.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &udpSocket{fd: fd}, nil
}

func (u *udpSocket) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.closed = true
		// Wakes a blocked read at once; the descriptor is closed by the
		// reader, so that its number is not reused under it.
		_ = unix.Shutdown(u.fd, unix.SHUT_RDWR)
	}
}

func (u *udpSocket) isClosed() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.closed
}

func (u *udpSocket) writeTo(b []byte, to *unix.RawSockaddrInet4) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		_ = sendTo(u.fd, b, to)
	}
}

// recvFrom and sendTo are recvfrom(2) and sendto(2) with the IPv4 address
// in place: unix.Recvfrom allocates a Sockaddr for every datagram.
func recvFrom(fd int, p []byte, from *unix.RawSockaddrInet4) (int, error) {
	l := uint32(unix.SizeofSockaddrInet4)
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, uintptr(unsafe.Pointer(from)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return 0, e
	}
	if l < unix.SizeofSockaddrInet4 || from.Family != unix.AF_INET {
		return int(n), errNotInet4
	}
	return int(n), nil
}

func sendTo(fd int, p []byte, to *unix.RawSockaddrInet4) error {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(to)), unix.SizeofSockaddrInet4)
	if e != 0 {
		return e
	}
	return nil
}

// errNotInet4 is a datagram without an IPv4 source (none reach an IPv4
// socket).
var errNotInet4 = errors.New("not from an IPv4 address")

func (l *listener) bind() (sockets, error) {
	ap := netip.AddrPortFrom(l.addr, Port)
	udp, err := listenUDP(ap)
	if err != nil {
		return sockets{}, fmt.Errorf("dns: listen udp %s: %w", ap, err)
	}
	tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		udp.close()
		unix.Close(udp.fd)
		return sockets{}, fmt.Errorf("dns: listen tcp %s: %w", ap, err)
	}
	return sockets{udp: udp, tcp: tcp}, nil
}

// run serves socks, and each later incarnation, until stop.
func (l *listener) run(socks sockets) {
	defer close(l.done)
	log := l.s.cfg.Logger
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		err := l.serve(socks)
		socks.close()
		if errors.Is(err, errClosed) {
			return
		}
		if time.Since(started) > 30*time.Second {
			backoff = 100 * time.Millisecond
		}
		log.Warn("dns: listener failed; restarting", "addr", l.addr, "error", err, "backoff", backoff)
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, backoffMax)
			if l.ensure != nil {
				if err := l.ensure(); err != nil {
					log.Warn("dns: repair before restarting the listener", "addr", l.addr, "error", err)
				}
			}
			var err error
			if socks, err = l.bind(); err == nil {
				break
			}
			log.Warn("dns: restart listener", "addr", l.addr, "error", err)
		}
		l.mu.Lock()
		l.restarts++
		l.mu.Unlock()
		log.Info("dns: listener restarted", "addr", l.addr)
	}
}

// serve runs the readers, the acceptor and the probe until one of them
// fails (the error) or stop (errClosed).
func (l *listener) serve(socks sockets) error {
	errc := make(chan error, 3)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { errc <- l.readUDP(ctx, socks.udp) })
	wg.Go(func() { errc <- l.acceptTCP(ctx, socks.tcp) })
	wg.Go(func() { errc <- l.probe(ctx) })
	var err error
	select {
	case <-l.stop:
		err = errClosed
	case err = <-errc:
	}
	cancel()
	socks.close()
	wg.Wait()
	return err
}

func (l *listener) readUDP(ctx context.Context, u *udpSocket) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer unix.Close(u.fd)
	buf := make([]byte, dns.MaxMsgSize)
	rd := newReader(l.s)
	var from unix.RawSockaddrInet4
	for {
		n, err := recvFrom(u.fd, buf, &from)
		if u.isClosed() || ctx.Err() != nil {
			return errClosed
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, errNotInet4) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read udp: %w", err)
		}
		out, fwd := rd.answer(netip.AddrFrom4(from.Addr), buf[:n])
		if fwd != nil {
			to := from
			go func() {
				if out := pack(l.s.resolve(ctx, fwd)); out != nil {
					u.writeTo(out, &to)
				}
			}()
			continue
		}
		if out != nil {
			u.writeTo(out, &from)
		}
	}
}

func (l *listener) acceptTCP(ctx context.Context, ln *net.TCPListener) error {
	sem := make(chan struct{}, maxTCPConns)
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return errClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept tcp: %w", err)
		}
		select {
		case sem <- struct{}{}:
		default:
			c.Close()
			continue
		}
		go func() {
			defer func() { <-sem }()
			l.serveTCP(ctx, c)
		}()
	}
}

// serveTCP answers length-prefixed queries on one connection (RFC 1035
// 4.2.2) until the client closes it or idles.
func (l *listener) serveTCP(ctx context.Context, c *net.TCPConn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	from, ok := netip.AddrFromSlice(c.RemoteAddr().(*net.TCPAddr).IP)
	if !ok {
		return
	}
	var lenBuf [2]byte
	for {
		_ = c.SetDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp, fwd, _ := l.s.prepare(from, msg, true)
		if fwd != nil {
			resp = l.s.resolve(ctx, fwd)
		}
		out := pack(resp)
		if out == nil {
			return
		}
		frame := make([]byte, 2+len(out))
		binary.BigEndian.PutUint16(frame, uint16(len(out)))
		copy(frame[2:], out)
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}

// probe asks the listener a question every ProbeInterval; two unanswered
// probes in a row fail the listener, which is then restarted.
func (l *listener) probe(ctx context.Context) error {
	misses := 0
	t := time.NewTicker(l.s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return errClosed
		case <-t.C:
		}
		if err := l.ask(ctx); err != nil {
			misses++
			if misses >= 2 {
				return fmt.Errorf("probe: %w", err)
			}
			continue
		}
		misses = 0
	}
}

// ask sends the probe from the listener's own address: when the address
// is gone the bind fails at once, and when it is there the query never
// leaves the host (a network that intercepts port 53 cannot answer for
// us). The server answers its own addresses REFUSED.
func (l *listener) ask(ctx context.Context) error {
	m := new(dns.Msg)
	m.SetQuestion("probe.berth.invalid.", dns.TypeA)
	m.Id = uint16(rand.IntN(1 << 16))
	c := &dns.Client{Net: "udp", Timeout: time.Second, Dialer: &net.Dialer{Timeout: time.Second, LocalAddr: &net.UDPAddr{IP: l.addr.AsSlice()}}}
	r, _, err := c.ExchangeContext(ctx, m, netip.AddrPortFrom(l.addr, Port).String())
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeRefused {
		return fmt.Errorf("probe answered %s, not by this server", dns.RcodeToString[r.Rcode])
	}
	return nil
}
