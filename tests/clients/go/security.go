package main

// Security from the environment, for every subcommand (issue 19):
//
//	SPATE_SECURITY_PROTOCOL  PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
//	SPATE_SASL_MECHANISM     PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
//	SPATE_SASL_USERNAME, SPATE_SASL_PASSWORD
//	SPATE_SSL_CA             PEM file of the CAs trusted
//	SPATE_SSL_CERT, SPATE_SSL_KEY   PEM client certificate and key (mTLS)
//	SPATE_GO_LOG             debug or info: franz-go's own log on stderr

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// withSecurity appends the TLS and SASL options the environment asks for.
func withSecurity(opts ...kgo.Opt) []kgo.Opt {
	protocol := strings.ToUpper(os.Getenv("SPATE_SECURITY_PROTOCOL"))
	if protocol == "SSL" || protocol == "SASL_SSL" {
		cfg, err := tlsConfig()
		if err != nil {
			fmt.Fprintln(os.Stderr, "tls:", err)
			os.Exit(2)
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if protocol == "SASL_PLAINTEXT" || protocol == "SASL_SSL" {
		mechanism, err := saslMechanism()
		if err != nil {
			fmt.Fprintln(os.Stderr, "sasl:", err)
			os.Exit(2)
		}
		opts = append(opts, kgo.SASL(mechanism))
	}
	switch strings.ToLower(os.Getenv("SPATE_GO_LOG")) {
	case "debug":
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, nil)))
	case "info":
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil)))
	}
	return opts
}

func tlsConfig() (*tls.Config, error) {
	pem, err := os.ReadFile(os.Getenv("SPATE_SSL_CA"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in SPATE_SSL_CA")
	}
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert := os.Getenv("SPATE_SSL_CERT"); cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, os.Getenv("SPATE_SSL_KEY"))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func saslMechanism() (sasl.Mechanism, error) {
	user, pass := os.Getenv("SPATE_SASL_USERNAME"), os.Getenv("SPATE_SASL_PASSWORD")
	switch m := os.Getenv("SPATE_SASL_MECHANISM"); m {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	default:
		return nil, fmt.Errorf("SPATE_SASL_MECHANISM %q", m)
	}
}
