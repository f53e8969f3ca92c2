// reg registers one service instance in etcd the way go-zero or go-micro
// services do, with etcd's own Go client, for the gateway's discovery tests.
//
//	reg -endpoints http://127.0.0.1:2379 -mode go-zero -key user.rpc -addr 127.0.0.1:9001
//	reg -endpoints ... -mode go-micro -service greeter -node greeter-1 -addr 127.0.0.1:9002 \
//	    -version v2 -meta zone=a,weight=3
//
// go-zero: a lease (TTL 10 s), key "<key>/<lease id in decimal>" = "host:port"
// put with the lease, kept alive. go-micro: a lease, key
// "<prefix><service>/<node>" = the JSON service record holding this one
// node, kept alive. Prints "registered <key> <lease id>" once the key is
// in; revokes the lease on SIGTERM or SIGINT (SIGKILL leaves it to expire).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
)

type node struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Metadata map[string]string `json:"metadata"`
}

type endpoint struct {
	Name     string            `json:"name"`
	Metadata map[string]string `json:"metadata"`
}

type service struct {
	Name      string            `json:"name"`
	Version   string            `json:"version"`
	Metadata  map[string]string `json:"metadata"`
	Endpoints []*endpoint       `json:"endpoints"`
	Nodes     []*node           `json:"nodes"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "reg: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	endpoints := flag.String("endpoints", "http://127.0.0.1:2379", "comma-separated etcd URLs")
	mode := flag.String("mode", "go-zero", "go-zero or go-micro")
	key := flag.String("key", "", "go-zero: the service key")
	svc := flag.String("service", "", "go-micro: the service name")
	nodeID := flag.String("node", "", "go-micro: the node id")
	prefix := flag.String("prefix", "/micro/registry/", "go-micro: the registry prefix")
	version := flag.String("version", "latest", "go-micro: the service version")
	meta := flag.String("meta", "", "go-micro: node metadata, k=v,k=v")
	addr := flag.String("addr", "", "host:port of the instance")
	ttl := flag.Int64("ttl", 10, "lease TTL in seconds")
	user := flag.String("user", "", "etcd user")
	password := flag.String("password", "", "etcd password")
	flag.Parse()

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		Username:    *user,
		Password:    *password,
	})
	if err != nil {
		fail("connect: %v", err)
	}
	defer cli.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	lease, err := cli.Grant(ctx, *ttl)
	cancel()
	if err != nil {
		fail("grant: %v", err)
	}

	var k, v string
	switch *mode {
	case "go-zero":
		k = fmt.Sprintf("%s/%d", *key, lease.ID)
		v = *addr
	case "go-micro":
		md := map[string]string{"protocol": "mucp", "transport": "http", "registry": "etcd"}
		if *meta != "" {
			for _, kv := range strings.Split(*meta, ",") {
				p := strings.SplitN(kv, "=", 2)
				if len(p) == 2 {
					md[p[0]] = p[1]
				}
			}
		}
		rec := service{
			Name:      *svc,
			Version:   *version,
			Metadata:  map[string]string{},
			Endpoints: []*endpoint{{Name: "Greeter.Hello", Metadata: map[string]string{}}},
			Nodes:     []*node{{ID: *nodeID, Address: *addr, Metadata: md}},
		}
		b, err := json.Marshal(rec)
		if err != nil {
			fail("encode: %v", err)
		}
		path := func(s string) string { return strings.ReplaceAll(s, "/", "-") }
		k = *prefix + path(*svc) + "/" + path(*nodeID)
		v = string(b)
	default:
		fail("unknown mode %q", *mode)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	_, err = cli.Put(ctx, k, v, clientv3.WithLease(lease.ID))
	cancel()
	if err != nil {
		fail("put: %v", err)
	}
	alive, err := cli.KeepAlive(context.Background(), lease.ID)
	if err != nil {
		fail("keepalive: %v", err)
	}
	fmt.Printf("registered %s %d\n", k, lease.ID)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case <-sigs:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cli.Revoke(ctx, lease.ID)
			cancel()
			if err != nil {
				fail("revoke: %v", err)
			}
			return
		case _, ok := <-alive:
			if !ok {
				// The lease is gone (etcd restarted past its TTL, say):
				// the instance is no longer registered, as with go-zero
				// before it re-registers. Keep the process for the test.
				alive = nil
			}
		}
	}
}
