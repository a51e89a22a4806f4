package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/xenha/xenha/examples/internal/hostd"
	"github.com/xenha/xenha/ha"
)

// daemonMain is `xenha daemon`: a member of the pool with its API.
func daemonMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xenha daemon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/xenha/daemon.json", "configuration file (JSON)")
	check := fs.Bool("check", false, "check the configuration without side effects, print one line per problem, and exit (1 if any)")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *check {
		return checkConfig(*path, stdout, stderr)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	reconcile := newReconcileErrors()
	log := slog.New(countingHandler{slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}), reconcile})
	f, err := hostd.LoadFile(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runDaemon(ctx, f, log, reconcile); err != nil {
		log.Error("daemon stopped", "err", err)
		return exitFailure
	}
	return exitOK
}

// checkConfig prints every problem of the file, one per line.
func checkConfig(path string, stdout, stderr io.Writer) int {
	r, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return exitFailure
	}
	defer r.Close()
	f, err := hostd.Parse(r)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return exitFailure
	}
	problems := f.Check()
	for _, p := range problems {
		fmt.Fprintf(stderr, "%s: %v\n", path, p)
	}
	if len(problems) > 0 {
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: ok (host %s, pool %s)\n", path, f.ID, f.ClusterID)
	return exitOK
}

// runDaemon runs the member and, once it is in the pool, its API.
func runDaemon(ctx context.Context, f *hostd.File, log *slog.Logger, reconcile prometheus.Counter) error {
	var servers []*http.Server
	var serveErr error
	ready := func(c *ha.Cluster) {
		srv, err := startAPI(ctx, c, f, log, reconcile)
		if err != nil {
			serveErr = err
			log.Error("API not started", "err", err)
			return
		}
		servers = srv
	}
	err := hostd.Run(ctx, f, log, ready)
	for _, s := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.Shutdown(sctx)
		cancel()
	}
	if err == nil {
		err = serveErr
	}
	return err
}

// startAPI serves the member's API on the configured listeners.
func startAPI(ctx context.Context, c *ha.Cluster, f *hostd.File, log *slog.Logger, reconcile prometheus.Counter) ([]*http.Server, error) {
	if f.API == nil {
		return nil, nil
	}
	tlsCfg, err := apiTLS(f)
	if err != nil {
		return nil, err
	}
	events := &eventLog{}
	m := newMetrics(c, reconcile)
	go m.follow(ctx)
	a := &api{c: c, events: events, writes: true}
	go a.feed(ctx)
	handler := func(a *api) http.Handler {
		mux := http.NewServeMux()
		a.routes(mux)
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /{$}", statusPage)
		return mux
	}
	var servers []*http.Server
	serve := func(addr string, h http.Handler, tc *tls.Config) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("api: listen %s: %w", addr, err)
		}
		if tc != nil {
			ln = tls.NewListener(ln, tc)
		}
		s := &http.Server{Handler: h, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		servers = append(servers, s)
		go func() {
			if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("api stopped", "addr", addr, "err", err)
			}
		}()
		log.Info("serving the API", "addr", ln.Addr().String(), "tls", tc != nil)
		return nil
	}
	if err := serve(f.API.Listen, handler(a), tlsCfg); err != nil {
		return servers, err
	}
	if f.API.StatusListen != "" {
		if err := serve(f.API.StatusListen, handler(&api{c: c, events: events}), nil); err != nil {
			return servers, err
		}
	}
	return servers, nil
}

// apiTLS is the API's server configuration: the member's own certificate,
// clients verified against the pool's CA, revoked serials refused.
func apiTLS(f *hostd.File) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.TLS.Cert, f.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("api: tls: %w", err)
	}
	caPEM, err := os.ReadFile(f.TLS.CA)
	if err != nil {
		return nil, fmt.Errorf("api: tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("api: tls: %s holds no PEM certificate", f.TLS.CA)
	}
	var check func(*x509.Certificate) error
	if f.API != nil && f.API.CRL != "" {
		rv, err := hostd.LoadRevocations(f.API.CRL, f.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		check = rv.Check
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if check == nil {
				return nil
			}
			for _, ch := range chains {
				if err := check(ch[0]); err != nil {
					return fmt.Errorf("api: %w", err)
				}
			}
			return nil
		},
	}, nil
}
