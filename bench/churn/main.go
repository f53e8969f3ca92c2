// churn is the registry side of bench/discovery-churn.sh: it is at once the
// backends (one 127.0.0.1 listener per node, answering 200 with its port)
// and the services registering them in etcd the way go-zero does (a lease
// per instance, "<key>/<lease id>" = "host:port" put with it, kept alive),
// with etcd's own Go client. It records, per node, when its key was written
// and when its first and last requests arrived.
//
//	churn run -endpoints URL -services 100 -per 10 -rate 100 -duration 60s -out nodes.tsv
//	    registers services*per nodes, prints "ready"; SIGUSR1 starts the churn
//	    (rate changes per second for duration: a new node registered on a
//	    port never used before, then a random node of the same service
//	    revoked), printing "churn done" at its end; SIGUSR2 writes the node
//	    table to -out and prints "dumped"; SIGTERM revokes nothing and exits.
//	churn stamp -o FILE
//	    copies stdin lines to FILE, each prefixed with the wall-clock time it
//	    was read (ns) and a tab (timestamps `gateway -d` output).
//	churn report -nodes nodes.tsv -printer stamped.log [-end NS]
//	    prints the figures as markdown.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "churn: "+format+"\n", args...)
	os.Exit(1)
}

func now() int64 { return time.Now().UnixNano() }

// ---- run -------------------------------------------------------------------

type node struct {
	svc      int
	port     int
	initial  bool
	lease    clientv3.LeaseID
	stopKA   context.CancelFunc
	putStart int64
	putEnd   int64
	revStart int64
	revEnd   int64
	first    int64 // atomic
	last     int64 // atomic
	count    int64 // atomic
	wrong    int64 // atomic: requests for another service's path
	wrongAt  int64 // atomic: the first of them
	wrongSvc int64 // atomic: the service the last of them was for
	leaving  bool  // guarded by world.mu
}

type world struct {
	cli      *clientv3.Client
	ttl      int64
	minAge   time.Duration
	mu       sync.Mutex
	nodes    []*node
	live     [][]*node
	used     map[int]bool
	spare    []net.Listener // ports handed out twice by the kernel, held until exit
	errors   int64          // atomic
	inflight int64          // atomic
	skipped  int64          // atomic
	marks    map[string]int64
	secs     []int64 // requests served in each second since ready
}

var (
	served   int64 // atomic: requests served by every node
	accepted int64 // atomic: connections accepted by every node
)

// serve answers every request on c with 200 and the node's port. The
// gateway sends GETs without bodies; a Content-Length body is skipped.
func serve(c net.Conn, n *node) {
	defer c.Close()
	body := strconv.Itoa(n.port)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	prefix := []byte(fmt.Sprintf("GET /s%d/", n.svc))
	r := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriterSize(c, 4096)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		t := now()
		// the gateway forwards /s<svc>/x unchanged: a request for another
		// service's path reached the wrong node
		if !bytes.HasPrefix(line, prefix) {
			if atomic.AddInt64(&n.wrong, 1) == 1 {
				atomic.StoreInt64(&n.wrongAt, t)
			}
			if i := bytes.IndexByte(line, ' '); i >= 0 && bytes.HasPrefix(line[i+1:], []byte("/s")) {
				rest := line[i+3:]
				j := bytes.IndexByte(rest, '/')
				if j > 0 {
					v, _ := strconv.Atoi(string(rest[:j]))
					atomic.StoreInt64(&n.wrongSvc, int64(v))
				}
			}
		}
		if atomic.LoadInt64(&n.first) == 0 {
			atomic.CompareAndSwapInt64(&n.first, 0, t)
		}
		atomic.StoreInt64(&n.last, t)
		atomic.AddInt64(&n.count, 1)
		atomic.AddInt64(&served, 1)
		clen, closeAfter := 0, false
		for {
			line, err = r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if len(line) > 15 && bytes.EqualFold(line[:15], []byte("content-length:")) {
				clen, _ = strconv.Atoi(strings.TrimSpace(string(line[15:])))
			} else if len(line) > 11 && bytes.EqualFold(line[:11], []byte("connection:")) &&
				bytes.Contains(bytes.ToLower(line), []byte("close")) {
				closeAfter = true
			} else if len(line) > 18 && bytes.EqualFold(line[:18], []byte("transfer-encoding:")) {
				return // not sent by the gateway for a GET
			}
		}
		if clen > 0 {
			if _, err := r.Discard(clen); err != nil {
				return
			}
		}
		w.Write(resp)
		if closeAfter {
			w.Flush()
			return
		}
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// listen opens a 127.0.0.1 port this run has not used before.
func (wd *world) listen() (net.Listener, int) {
	for i := 0; i < 100; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail("listen: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		wd.mu.Lock()
		if !wd.used[port] {
			wd.used[port] = true
			wd.mu.Unlock()
			return ln, port
		}
		wd.spare = append(wd.spare, ln)
		wd.mu.Unlock()
	}
	fail("no fresh port")
	return nil, 0
}

// register starts a node of service svc: its listener, then its lease and
// key, as a go-zero instance does when it starts.
func (wd *world) register(svc int, initial bool) (*node, error) {
	ln, port := wd.listen()
	n := &node{svc: svc, port: port, initial: initial}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			atomic.AddInt64(&accepted, 1)
			go serve(c, n)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := wd.cli.Grant(ctx, wd.ttl)
	if err != nil {
		return nil, fmt.Errorf("grant: %v", err)
	}
	n.lease = g.ID
	key := fmt.Sprintf("svc%d.rpc/%d", svc, g.ID)
	n.putStart = now()
	_, err = wd.cli.Put(ctx, key, fmt.Sprintf("127.0.0.1:%d", port), clientv3.WithLease(g.ID))
	n.putEnd = now()
	if err != nil {
		return nil, fmt.Errorf("put: %v", err)
	}
	kctx, kcancel := context.WithCancel(context.Background())
	ch, err := wd.cli.KeepAlive(kctx, g.ID)
	if err != nil {
		kcancel()
		return nil, fmt.Errorf("keepalive: %v", err)
	}
	n.stopKA = kcancel
	go func() {
		for range ch {
		}
	}()
	wd.mu.Lock()
	wd.nodes = append(wd.nodes, n)
	wd.live[svc] = append(wd.live[svc], n)
	wd.mu.Unlock()
	return n, nil
}

// change replaces one node of a random service: the new one registers
// first, then the old one's lease is revoked (a rolling restart).
func (wd *world) change() {
	defer atomic.AddInt64(&wd.inflight, -1)
	svc := rand.Intn(len(wd.live))
	wd.mu.Lock()
	var cand []*node
	// as in a rolling restart, an instance that has just started is not
	// the one stopped (and every new node lives long enough to be routed)
	young := now() - int64(wd.minAge)
	for _, n := range wd.live[svc] {
		if !n.leaving && n.putEnd < young {
			cand = append(cand, n)
		}
	}
	var old *node
	if len(cand) > 0 {
		old = cand[rand.Intn(len(cand))]
		old.leaving = true
	}
	wd.mu.Unlock()
	if _, err := wd.register(svc, false); err != nil {
		atomic.AddInt64(&wd.errors, 1)
		fmt.Fprintf(os.Stderr, "churn: register: %v\n", err)
	}
	if old == nil {
		return
	}
	old.stopKA()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	old.revStart = now()
	_, err := wd.cli.Revoke(ctx, old.lease)
	old.revEnd = now()
	cancel()
	if err != nil {
		atomic.AddInt64(&wd.errors, 1)
		fmt.Fprintf(os.Stderr, "churn: revoke: %v\n", err)
	}
	wd.mu.Lock()
	l := wd.live[svc]
	for i, n := range l {
		if n == old {
			wd.live[svc] = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	wd.mu.Unlock()
}

func (wd *world) churn(rate int, dur time.Duration) {
	const maxInflight = 500
	wd.mu.Lock()
	wd.marks["churn_start"] = now()
	wd.mu.Unlock()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	total := int(int64(rate) * int64(dur) / int64(time.Second))
	for i := 0; i < total; i++ {
		<-tick.C
		if atomic.LoadInt64(&wd.inflight) >= maxInflight {
			atomic.AddInt64(&wd.skipped, 1)
			continue
		}
		atomic.AddInt64(&wd.inflight, 1)
		go wd.change()
	}
	for atomic.LoadInt64(&wd.inflight) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	wd.mu.Lock()
	wd.marks["churn_end"] = now()
	wd.mu.Unlock()
	fmt.Printf("churn done\n")
}

func (wd *world) dump(path string) error {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	f, err := os.Create(path + ".new")
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "#mark\tdumped\t%d\n", now())
	for k, v := range wd.marks {
		fmt.Fprintf(w, "#mark\t%s\t%d\n", k, v)
	}
	fmt.Fprintf(w, "#mark\terrors\t%d\n", atomic.LoadInt64(&wd.errors))
	fmt.Fprintf(w, "#mark\taccepted\t%d\n", atomic.LoadInt64(&accepted))
	fmt.Fprintf(w, "#mark\tserved\t%d\n", atomic.LoadInt64(&served))
	fmt.Fprintf(w, "#mark\tskipped\t%d\n", atomic.LoadInt64(&wd.skipped))
	fmt.Fprintf(w, "#secs\t%d", wd.marks["register_end"])
	for _, c := range wd.secs {
		fmt.Fprintf(w, "\t%d", c)
	}
	fmt.Fprintf(w, "\n")
	fmt.Fprintf(w, "#kind\tsvc\tport\tput_start\tput_end\trev_start\trev_end\tfirst\tlast\tcount\twrong\twrong_at\twrong_svc\n")
	for _, n := range wd.nodes {
		kind := "new"
		if n.initial {
			kind = "init"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", kind, n.svc, n.port,
			n.putStart, n.putEnd, n.revStart, n.revEnd, atomic.LoadInt64(&n.first),
			atomic.LoadInt64(&n.last), atomic.LoadInt64(&n.count), atomic.LoadInt64(&n.wrong),
			atomic.LoadInt64(&n.wrongAt), atomic.LoadInt64(&n.wrongSvc))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	f.Close()
	return os.Rename(path+".new", path)
}

func cmdRun(args []string) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	endpoints := fs.String("endpoints", "http://127.0.0.1:2379", "etcd URLs, comma-separated")
	services := fs.Int("services", 100, "services (keys svc<i>.rpc)")
	per := fs.Int("per", 10, "nodes per service")
	rate := fs.Int("rate", 100, "changes per second")
	dur := fs.Duration("duration", 60*time.Second, "churn duration")
	ttl := fs.Int64("ttl", 10, "lease TTL (s)")
	out := fs.String("out", "nodes.tsv", "node table written on SIGUSR2")
	minAge := fs.Duration("min-age", 2*time.Second, "a node younger than this is not revoked")
	fs.Parse(args)

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		fail("connect: %v", err)
	}
	wd := &world{cli: cli, ttl: *ttl, minAge: *minAge, live: make([][]*node, *services),
		used: map[int]bool{}, marks: map[string]int64{}}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)

	// the initial registration, 20 at a time
	wd.marks["register_start"] = now()
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	for s := 0; s < *services; s++ {
		for i := 0; i < *per; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go func(s int) {
				defer wg.Done()
				if _, err := wd.register(s, true); err != nil {
					fail("register: %v", err)
				}
				<-sem
			}(s)
		}
	}
	wg.Wait()
	wd.marks["register_end"] = now()
	fmt.Printf("ready %d\n", len(wd.nodes))
	go func() {
		prev := atomic.LoadInt64(&served)
		for range time.Tick(time.Second) {
			cur := atomic.LoadInt64(&served)
			wd.mu.Lock()
			wd.secs = append(wd.secs, cur-prev)
			wd.mu.Unlock()
			prev = cur
		}
	}()

	started := false
	for sig := range sigs {
		switch sig {
		case syscall.SIGUSR1:
			if !started {
				started = true
				go wd.churn(*rate, *dur)
			}
		case syscall.SIGUSR2:
			if err := wd.dump(*out); err != nil {
				fail("dump: %v", err)
			}
			fmt.Printf("dumped\n")
		default:
			os.Exit(0)
		}
	}
}

// ---- stamp -----------------------------------------------------------------

func cmdStamp(args []string) {
	fs := flag.NewFlagSet("stamp", flag.ExitOnError)
	out := fs.String("o", "stamped.log", "output")
	fs.Parse(args)
	f, err := os.Create(*out)
	if err != nil {
		fail("%v", err)
	}
	r := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			f.Write(append([]byte(strconv.FormatInt(now(), 10)+"\t"), line...))
		}
		if err != nil {
			return
		}
	}
}

// ---- report ----------------------------------------------------------------

type rec struct {
	kind                       string
	svc, port                  int
	putStart, putEnd, revStart int64
	revEnd, first, last, count int64
	wrong, wrongAt, wrongSvc   int64
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(p/100*float64(len(v))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(v) {
		i = len(v) - 1
	}
	return v[i]
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

type stat struct {
	name string
	v    []float64
}

func (s stat) row() string {
	sort.Float64s(s.v)
	sum := 0.0
	for _, x := range s.v {
		sum += x
	}
	mean := 0.0
	if len(s.v) > 0 {
		mean = sum / float64(len(s.v))
	}
	return fmt.Sprintf("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f |", s.name, len(s.v),
		pct(s.v, 50), mean, pct(s.v, 90), pct(s.v, 99), pct(s.v, 100))
}

func cmdReport(args []string) {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	nodesPath := fs.String("nodes", "nodes.tsv", "node table")
	printer := fs.String("printer", "", "stamped gateway -d output")
	gwlog := fs.String("gwlog", "", "the gateway's error log at level info (the workers' list changes)")
	lateMs := fs.Int64("late", 1000, "a request this long after a revoke returned counts as late (ms)")
	fs.Parse(args)

	f, err := os.Open(*nodesPath)
	if err != nil {
		fail("%v", err)
	}
	marks := map[string]int64{}
	var recs []rec
	var secs []int64
	var secs0 int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		t := strings.Split(sc.Text(), "\t")
		if t[0] == "#mark" && len(t) == 3 {
			marks[t[1]], _ = strconv.ParseInt(t[2], 10, 64)
			continue
		}
		if t[0] == "#secs" && len(t) >= 2 {
			secs0, _ = strconv.ParseInt(t[1], 10, 64)
			for _, x := range t[2:] {
				v, _ := strconv.ParseInt(x, 10, 64)
				secs = append(secs, v)
			}
			continue
		}
		if strings.HasPrefix(t[0], "#") || len(t) != 13 {
			continue
		}
		var r rec
		r.kind = t[0]
		r.svc, _ = strconv.Atoi(t[1])
		r.port, _ = strconv.Atoi(t[2])
		p := func(i int) int64 { x, _ := strconv.ParseInt(t[i], 10, 64); return x }
		r.putStart, r.putEnd, r.revStart, r.revEnd = p(3), p(4), p(5), p(6)
		r.first, r.last, r.count = p(7), p(8), p(9)
		r.wrong, r.wrongAt, r.wrongSvc = p(10), p(11), p(12)
		recs = append(recs, r)
	}
	f.Close()

	// the first time gateway -d listed each address
	seen := map[int]int64{}
	if *printer != "" {
		pf, err := os.Open(*printer)
		if err != nil {
			fail("%v", err)
		}
		ps := bufio.NewScanner(pf)
		ps.Buffer(make([]byte, 1<<20), 16<<20)
		for ps.Scan() {
			line := ps.Text()
			tab := strings.IndexByte(line, '\t')
			if tab < 0 {
				continue
			}
			ts, _ := strconv.ParseInt(line[:tab], 10, 64)
			var m struct {
				Nodes []struct {
					Addr string `json:"addr"`
				} `json:"nodes"`
			}
			if json.Unmarshal([]byte(line[tab+1:]), &m) != nil {
				continue
			}
			for _, n := range m.Nodes {
				i := strings.LastIndexByte(n.Addr, ':')
				port, _ := strconv.Atoi(n.Addr[i+1:])
				if _, ok := seen[port]; !ok {
					seen[port] = ts
				}
			}
		}
		pf.Close()
	}

	// when the worker applied each upstream's lists: lines
	// `<RFC 3339 ms> [info] worker 0: upstream "u<svc>": N nodes from etcd1`
	applies := map[int][]int64{}
	if *gwlog != "" {
		lf, err := os.Open(*gwlog)
		if err != nil {
			fail("%v", err)
		}
		ls := bufio.NewScanner(lf)
		for ls.Scan() {
			line := ls.Text()
			i := strings.Index(line, ": upstream \"u")
			if i < 0 || !strings.Contains(line, " nodes from ") || !strings.Contains(line, "] worker ") {
				continue
			}
			ts, err := time.Parse("2006-01-02T15:04:05.000Z07:00", strings.Fields(line)[0])
			if err != nil {
				continue
			}
			rest := line[i+len(": upstream \"u"):]
			svc, err := strconv.Atoi(rest[:strings.IndexByte(rest, '"')])
			if err != nil {
				continue
			}
			applies[svc] = append(applies[svc], ts.UnixNano())
		}
		lf.Close()
	}
	// the first apply of svc's lists at or after t (log times are in ms)
	applied := func(svc int, t int64) (int64, bool) {
		l := applies[svc]
		i := sort.Search(len(l), func(i int) bool { return l[i] >= t-t%1e6 })
		if i == len(l) {
			return 0, false
		}
		return l[i], true
	}

	total := stat{name: "write -> first routed request (from the start of the Put)"}
	fromEnd := stat{name: "write acknowledged -> first routed request"}
	put := stat{name: "Put call (etcd commit, fsync included)"}
	watch := stat{name: "write -> listed by `gateway -d` (watch delivery and parsing)"}
	rest := stat{name: "listed by `gateway -d` -> first routed request (worker poll, request sampling)"}
	app := stat{name: "write -> the worker applies the service's new list (its log line, ms)"}
	listApp := stat{name: "listed by `gateway -d` -> the worker applies it (publication, 50 ms poll)"}
	appFirst := stat{name: "the worker applies the list -> first routed request (request sampling)"}
	stop := stat{name: "revoke acknowledged -> last request on the removed node"}
	var never, late, liveIdle, newN, removed int
	var neverWhy []string
	var slow []rec
	dumped := marks["dumped"]
	for _, r := range recs {
		if r.revEnd > 0 {
			removed++
			if r.last > 0 {
				stop.v = append(stop.v, ms(r.last-r.revEnd))
				if r.last-r.revEnd > *lateMs*1e6 {
					late++
				}
			}
		} else if r.last < dumped-2e9 {
			liveIdle++
		}
		if r.kind != "new" {
			continue
		}
		newN++
		put.v = append(put.v, ms(r.putEnd-r.putStart))
		at, haveApp := applied(r.svc, r.putStart)
		if haveApp {
			app.v = append(app.v, ms(at-r.putStart))
			if r.first > 0 {
				appFirst.v = append(appFirst.v, ms(r.first-at))
			}
		}
		if ts, ok := seen[r.port]; ok {
			if haveApp {
				listApp.v = append(listApp.v, ms(at-ts))
			}
			watch.v = append(watch.v, ms(ts-r.putStart))
			if r.first > 0 {
				rest.v = append(rest.v, ms(r.first-ts))
			}
		}
		if r.first == 0 {
			never++
			life := "still registered"
			if r.revStart > 0 {
				life = fmt.Sprintf("revoked %.0f ms after its write", ms(r.revStart-r.putStart))
			}
			neverWhy = append(neverWhy, fmt.Sprintf("svc%d port %d (%s)", r.svc, r.port, life))
			continue
		}
		total.v = append(total.v, ms(r.first-r.putStart))
		fromEnd.v = append(fromEnd.v, ms(r.first-r.putEnd))
		slow = append(slow, r)
	}
	var wrongNodes, wrongReqs int64
	var wrongEx []string
	for _, r := range recs {
		if r.wrong == 0 {
			continue
		}
		wrongNodes++
		wrongReqs += r.wrong
		if len(wrongEx) < 5 {
			state := "still registered"
			if r.revEnd > 0 {
				state = fmt.Sprintf("revoked at %+.3f s", float64(r.revEnd-r.wrongAt)/-1e9)
			}
			wrongEx = append(wrongEx, fmt.Sprintf("svc%d port %d (%s; %d of its %d requests for other services, the first at %.1f s of the churn, the last for svc%d)",
				r.svc, r.port, state, r.wrong, r.count, float64(r.wrongAt-marks["churn_start"])/1e9, r.wrongSvc))
		}
	}
	cs, ce := marks["churn_start"], marks["churn_end"]
	fmt.Printf("- new nodes registered during the churn: %d in %.1f s (%.1f per second); register/revoke errors: %d; ticks skipped (over 500 changes in flight): %d\n",
		newN, float64(ce-cs)/1e9, float64(newN)/(float64(ce-cs)/1e9), marks["errors"], marks["skipped"])
	if wrongNodes > 0 {
		fmt.Printf("- **requests for one service that reached a node of another: %d, on %d nodes**: %s\n", wrongReqs, wrongNodes, strings.Join(wrongEx, "; "))
	} else {
		fmt.Printf("- requests for one service that reached a node of another: 0\n")
	}
	fmt.Printf("- new nodes never routed to: %d", never)
	if never > 0 {
		fmt.Printf(" (%s)", strings.Join(neverWhy[:min(len(neverWhy), 5)], "; "))
	}
	fmt.Printf("\n")
	fmt.Printf("- the backends accepted %d connections and served %d requests in the whole run\n", marks["accepted"], marks["served"])
	fmt.Printf("- removed nodes: %d; with a request more than %d ms after their revoke returned: %d\n", removed, *lateMs, late)
	fmt.Printf("- registered nodes with no request in the last 2 s before the table was written: %d\n", liveIdle)
	sort.Slice(slow, func(i, j int) bool {
		return slow[i].first-slow[i].putStart > slow[j].first-slow[j].putStart
	})
	var ws []string
	for _, r := range slow[:min(len(slow), 5)] {
		d := "not listed by gateway -d"
		if ts, ok := seen[r.port]; ok {
			d = fmt.Sprintf("listed by gateway -d at +%.1f", ms(ts-r.putStart))
		}
		if at, ok := applied(r.svc, r.putStart); ok {
			d += fmt.Sprintf(", applied by the worker at +%.0f", ms(at-r.putStart))
		}
		ws = append(ws, fmt.Sprintf("svc%d port %d: Put +%.1f, %s, first request +%.1f ms (at %.1f s of the churn)",
			r.svc, r.port, ms(r.putEnd-r.putStart), d, ms(r.first-r.putStart), float64(r.putStart-marks["churn_start"])/1e9))
	}
	if len(ws) > 0 {
		fmt.Printf("- the slowest new nodes: %s\n", strings.Join(ws, "; "))
	}
	fmt.Printf("\n| delay (ms) | nodes | p50 | mean | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range []stat{total, fromEnd, put, watch, rest, app, listApp, appFirst, stop} {
		if len(s.v) == 0 {
			continue
		}
		fmt.Println(s.row())
	}
	if len(secs) > 0 && cs > 0 {
		// requests the backends served, in 5 s steps from the churn's start
		fmt.Printf("\nRequests served by the backends, req/s over 5 s steps (t = 0: the churn starts; t = %.0f: it ends):\n\n", float64(ce-cs)/1e9)
		off := float64(cs-secs0) / 1e9
		var cols, vals []string
		for i := 0; i+5 <= len(secs); i += 5 {
			sum := int64(0)
			for _, v := range secs[i : i+5] {
				sum += v
			}
			cols = append(cols, fmt.Sprintf("%.0f", float64(i)-off))
			vals = append(vals, strconv.FormatInt(sum/5, 10))
		}
		fmt.Printf("| t (s) | %s |\n|---|%s\n| req/s | %s |\n", strings.Join(cols, " | "),
			strings.Repeat("---:|", len(cols)), strings.Join(vals, " | "))
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: churn run|stamp|report ...")
	}
	switch os.Args[1] {
	case "run":
		cmdRun(os.Args[2:])
	case "stamp":
		cmdStamp(os.Args[2:])
	case "report":
		cmdReport(os.Args[2:])
	default:
		fail("unknown command %q", os.Args[1])
	}
}
