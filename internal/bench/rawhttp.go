package bench

// A lean HTTP/1.1 client for the load generator. net/http's client costs
// about 100 µs of CPU a request, as much as half of what the server
// spends on an introspection; on a machine where the generator, the server
// and PostgreSQL share the cores, that is taken from the server and
// measured as its slowness. pgbench's client is lean C. So, as wrk does,
// each worker writes its requests on one keep-alive connection and reads
// just what it needs of the answers: the status, Location, and the body
// by Content-Length or chunks.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxAnswerBytes bounds a body the generator reads.
const maxAnswerBytes = 1 << 20

// rawClient is one worker's connection to the server.
type rawClient struct {
	addr string // host:port
	host string // the Host header
	conn net.Conn
	r    *bufio.Reader
	buf  bytes.Buffer
}

// rawAnswer is what the generator reads of an answer.
type rawAnswer struct {
	status   int
	location string
	body     []byte
}

func newRawClient(issuer string) (*rawClient, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("the load generator speaks plain HTTP to loopback, not %q", u.Scheme)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &rawClient{addr: addr, host: u.Host}, nil
}

// close ends the connection, if any.
func (c *rawClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.r = nil, nil
	}
}

// do sends one request and reads its answer. header holds complete
// header lines ("Name: value\r\n"). A connection that failed is dropped,
// and the next request dials anew.
func (c *rawClient) do(ctx context.Context, method, target, header string, body []byte) (rawAnswer, error) {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return rawAnswer{}, err
		}
		c.conn, c.r = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetDeadline(deadline)
	c.buf.Reset()
	c.buf.WriteString(method + " " + target + " HTTP/1.1\r\nHost: " + c.host + "\r\n" + header)
	if body != nil {
		c.buf.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	c.buf.WriteString("\r\n")
	c.buf.Write(body)
	if _, err := c.conn.Write(c.buf.Bytes()); err != nil {
		c.close()
		return rawAnswer{}, err
	}
	a, keep, err := readAnswer(c.r)
	if err != nil || !keep {
		c.close()
	}
	return a, err
}

// readAnswer reads one HTTP/1.1 answer; keep reports whether the
// connection may carry the next request.
func readAnswer(r *bufio.Reader) (a rawAnswer, keep bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return a, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return a, false, fmt.Errorf("not an HTTP answer: %q", line)
	}
	if a.status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return a, false, fmt.Errorf("status line %q: %w", line, err)
	}
	length, chunked, keep := -1, false, true
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return a, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return a, false, fmt.Errorf("header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 || length > maxAnswerBytes {
				return a, false, fmt.Errorf("Content-Length %q", value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case asciiEqualFold(name, "Location"):
			a.location = string(value)
		case asciiEqualFold(name, "Connection"):
			keep = !bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		a.body, err = readChunked(r)
	case length >= 0:
		a.body = make([]byte, length)
		_, err = io.ReadFull(r, a.body)
	default:
		// No length: the body runs to the end of the connection.
		a.body, err = io.ReadAll(io.LimitReader(r, maxAnswerBytes))
		keep = false
	}
	return a, keep && err == nil, err
}

// readChunked reads a chunked body and its (empty) trailer.
func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		sizeText, _, _ := strings.Cut(strings.TrimSpace(string(line)), ";")
		size, err := strconv.ParseInt(sizeText, 16, 32)
		if err != nil || size < 0 || len(body)+int(size) > maxAnswerBytes {
			return nil, fmt.Errorf("chunk size %q", line)
		}
		if size == 0 {
			for { // the trailer, up to its empty line
				line, err := r.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return body, nil
				}
			}
		}
		start := len(body)
		body = append(body, make([]byte, size)...)
		if _, err := io.ReadFull(r, body[start:]); err != nil {
			return nil, err
		}
		if crlf, err := r.ReadSlice('\n'); err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return nil, errors.New("chunk not followed by CRLF")
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	return len(b) == len(s) && strings.EqualFold(string(b), s)
}
