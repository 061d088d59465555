// pgbouncer-scrape reads a PgBouncer-compatible admin console the way prometheus-community's
// pgbouncer_exporter does, and prints what that exporter would expose, in the Prometheus text
// format. The exporter's own module is not served by the Go module proxy this project builds
// from, so this program stands in for it: the same driver (lib/pq, simple-protocol queries),
// the same commands in the same order (SHOW STATS to connect, then VERSION, LISTS, CONFIG,
// DATABASES, STATS, POOLS), the exporter's metric names, value scaling and label handling, and
// client_golang's registry, which refuses duplicate series as the exporter's would.
//
// Usage: pgbouncer-scrape 'postgres://user:pass@host:port/dbproxy?sslmode=disable'
// Exit status 0 and the exposition on stdout; any error the exporter would log makes the
// status 1 and is printed on stderr (pgbouncer_up is then 0).
package main

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

type kind int

const (
	label kind = iota
	gauge
	counter
)

type column struct {
	kind   kind
	metric string
	scale  float64
	help   string
}

// The exporter's column mappings per SHOW subject (metric name: pgbouncer_<subject>_<metric>).
var subjects = []struct {
	name    string
	columns map[string]column
}{
	{"databases", map[string]column{
		"name":                {kind: label},
		"host":                {kind: label},
		"port":                {kind: label},
		"database":            {kind: label},
		"force_user":          {kind: label},
		"pool_mode":           {kind: label},
		"pool_size":           {gauge, "pool_size", 1, "Maximum number of server connections"},
		"reserve_pool":        {gauge, "reserve_pool", 1, "Maximum number of additional connections for this database"},
		"max_connections":     {gauge, "max_connections", 1, "Maximum number of allowed connections for this database"},
		"current_connections": {gauge, "current_connections", 1, "Current number of connections for this database"},
		"paused":              {gauge, "paused", 1, "1 if this database is currently paused, else 0"},
		"disabled":            {gauge, "disabled", 1, "1 if this database is currently disabled, else 0"},
	}},
	{"stats", map[string]column{
		"database":                      {kind: label},
		"total_server_assignment_count": {counter, "server_assignments_total", 1, "Total number of times a server was assigned to a client"},
		"total_xact_count":              {counter, "sql_transactions_pooled_total", 1, "Total number of SQL transactions pooled"},
		"total_query_count":             {counter, "queries_pooled_total", 1, "Total number of SQL queries pooled"},
		"total_received":                {counter, "received_bytes_total", 1, "Total volume in bytes of network traffic received by pgbouncer, shown as bytes"},
		"total_sent":                    {counter, "sent_bytes_total", 1, "Total volume in bytes of network traffic sent by pgbouncer, shown as bytes"},
		"total_xact_time":               {counter, "server_in_transaction_seconds_total", 1e-6, "Total number of seconds spent by pgbouncer when connected to PostgreSQL in a transaction, either idle in transaction or executing queries"},
		"total_query_time":              {counter, "queries_duration_seconds_total", 1e-6, "Total number of seconds spent by pgbouncer when actively connected to PostgreSQL, executing queries"},
		"total_wait_time":               {counter, "client_wait_seconds_total", 1e-6, "Time spent by clients waiting for a server in seconds"},
		"total_client_parse_count":      {counter, "client_parses_total", 1, "Total number of prepared statement Parse messages received from clients"},
		"total_server_parse_count":      {counter, "server_parses_total", 1, "Total number of prepared statement Parse messages sent by pgbouncer to PostgreSQL"},
		"total_bind_count":              {counter, "binds_total", 1, "Total number of prepared statements readied for execution with a Bind message"},
	}},
	{"pools", map[string]column{
		"database":              {kind: label},
		"user":                  {kind: label},
		"cl_active":             {gauge, "client_active_connections", 1, "Client connections linked to server connection and able to process queries, shown as connection"},
		"cl_active_cancel_req":  {gauge, "client_active_cancel_connections", 1, "Client connections that have forwarded query cancellations to the server and are waiting for the server response"},
		"cl_waiting":            {gauge, "client_waiting_connections", 1, "Client connections waiting on a server connection, shown as connection"},
		"cl_waiting_cancel_req": {gauge, "client_waiting_cancel_connections", 1, "Client connections that have not forwarded query cancellations to the server yet"},
		"sv_active":             {gauge, "server_active_connections", 1, "Server connections linked to a client connection, shown as connection"},
		"sv_active_cancel":      {gauge, "server_active_cancel_connections", 1, "Server connections that are currently forwarding a cancel request"},
		"sv_being_canceled":     {gauge, "server_being_canceled_connections", 1, "Servers that could become idle but wait for in-flight cancel requests"},
		"sv_idle":               {gauge, "server_idle_connections", 1, "Server connections idle and ready for a client query, shown as connection"},
		"sv_used":               {gauge, "server_used_connections", 1, "Server connections idle more than server_check_delay, needing server_check_query, shown as connection"},
		"sv_tested":             {gauge, "server_testing_connections", 1, "Server connections currently running either server_reset_query or server_check_query, shown as connection"},
		"sv_login":              {gauge, "server_login_connections", 1, "Server connections currently in the process of logging in, shown as connection"},
		"maxwait":               {gauge, "client_maxwait_seconds", 1, "Age of oldest unserved client connection, shown as second"},
	}},
}

var lists = map[string]string{
	"databases": "databases", "users": "users", "pools": "pools", "free_clients": "free_clients", "used_clients": "used_clients",
	"login_clients": "login_clients", "free_servers": "free_servers", "used_servers": "used_servers",
	"dns_names": "cached_dns_names", "dns_zones": "cached_dns_zones", "dns_queries": "in_flight_dns_queries",
}

var configs = map[string]string{"max_client_conn": "max_client_connections", "max_user_connections": "max_user_connections"}

// toFloat converts a scanned value as the exporter does: numbers as they are, text parsed, NULL as NaN.
func toFloat(v any, scale float64) (float64, error) {
	switch x := v.(type) {
	case int64:
		return float64(x) * scale, nil
	case float64:
		return x * scale, nil
	case []byte:
		f, err := strconv.ParseFloat(string(x), 64)
		return f * scale, err
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f * scale, err
	case nil:
		return 0, errors.New("NULL") // NaN in the exporter; a console should not send it
	default:
		return 0, fmt.Errorf("unhandled type %T", v)
	}
}

// toLabel converts a scanned value to a label the way the exporter accepts one: text, integers, floats, NULL.
func toLabel(v any) (string, error) {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) {
			return "", errors.New("invalid UTF-8")
		}
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return fmt.Sprintf("%f", x), nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("unhandled type %T for a label", v)
	}
}

type scraper struct {
	db      *sql.DB
	metrics []prometheus.Metric
	errs    []string
}

func (s *scraper) fail(format string, args ...any) { s.errs = append(s.errs, fmt.Sprintf(format, args...)) }

func (s *scraper) add(name, help string, t prometheus.ValueType, v float64, labels []string, values []string) {
	m, err := prometheus.NewConstMetric(prometheus.NewDesc(name, help, labels, nil), t, v, values...)
	if err != nil {
		s.fail("%s: %v", name, err)
		return
	}
	s.metrics = append(s.metrics, m)
}

// rowsOf runs a query and returns column names and rows scanned into interface values.
func (s *scraper) rowsOf(q string) ([]string, [][]any, error) {
	rows, err := s.db.Query(q)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		out = append(out, vals)
	}
	return cols, out, rows.Err()
}

func (s *scraper) version() {
	cols, rows, err := s.rowsOf("SHOW VERSION;")
	if err != nil || len(cols) != 1 || cols[0] != "version" || len(rows) == 0 {
		s.fail("SHOW VERSION: %v (columns %v)", err, cols)
		return
	}
	v, ok := rows[0][0].(string)
	if !ok {
		s.fail("SHOW VERSION: version is %T, not text", rows[0][0])
		return
	}
	s.add("pgbouncer_version_info", "The pgbouncer version info", prometheus.GaugeValue, 1, []string{"version"}, []string{v})
}

func (s *scraper) keyValues(q string, names map[string]string, prefix string, wantCols ...int) {
	cols, rows, err := s.rowsOf(q)
	if err != nil {
		s.fail("%s %v", q, err)
		return
	}
	ok := false
	for _, n := range wantCols {
		ok = ok || len(cols) == n
	}
	if !ok {
		s.fail("%s: %d columns", q, len(cols))
		return
	}
	for _, r := range rows {
		key, _ := r[0].(string)
		metric, known := names[key]
		if !known {
			continue
		}
		f, err := toFloat(r[1], 1)
		if err != nil {
			s.fail("%s %s: %v", q, key, err)
			continue
		}
		s.add(prefix+metric, q+" "+key, prometheus.GaugeValue, f, nil, nil)
	}
}

func (s *scraper) subject(name string, mapping map[string]column) {
	cols, rows, err := s.rowsOf("SHOW " + strings.ToUpper(name) + ";")
	if err != nil {
		s.fail("SHOW %s: %v", name, err)
		return
	}
	var labels []string
	for col, m := range mapping {
		if m.kind == label {
			labels = append(labels, col)
		}
	}
	idx := map[string]int{}
	for i, c := range cols {
		idx[c] = i
	}
	for _, r := range rows {
		values := make([]string, len(labels))
		for i, l := range labels {
			if j, ok := idx[l]; ok {
				v, err := toLabel(r[j])
				if err != nil {
					s.fail("SHOW %s column %s: %v", name, l, err)
				}
				values[i] = v
			}
		}
		for i, c := range cols {
			m, ok := mapping[c]
			if !ok || m.kind == label {
				continue
			}
			f, err := toFloat(r[i], m.scale)
			if err != nil {
				s.fail("SHOW %s column %s: %v", name, c, err)
				continue
			}
			t := prometheus.GaugeValue
			if m.kind == counter {
				t = prometheus.CounterValue
			}
			s.add("pgbouncer_"+name+"_"+m.metric, m.help, t, f, labels, values)
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pgbouncer-scrape CONNECTION_STRING")
		os.Exit(2)
	}
	conn, err := pq.NewConnector(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s := &scraper{db: sql.OpenDB(conn)}
	defer s.db.Close()
	s.db.SetMaxOpenConns(1)
	up := 1.0
	// The exporter's connection check.
	if rows, err := s.db.Query("SHOW STATS"); err != nil {
		s.fail("connect: %v", err)
		up = 0
	} else {
		rows.Close()
		s.version()
		s.keyValues("SHOW LISTS;", lists, "pgbouncer_", 2)
		s.keyValues("SHOW CONFIG;", configs, "pgbouncer_config_", 3, 4)
		for _, sub := range subjects {
			s.subject(sub.name, sub.columns)
		}
	}
	if len(s.errs) > 0 {
		up = 0
	}
	s.add("pgbouncer_up", "The pgbouncer scrape succeeded", prometheus.GaugeValue, up, nil, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector(s.metrics))
	families, err := reg.Gather()
	if err != nil {
		s.errs = append(s.errs, "gather: "+err.Error())
	}
	enc := expfmt.NewEncoder(os.Stdout, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			s.errs = append(s.errs, err.Error())
		}
	}
	if len(s.errs) > 0 {
		fmt.Fprintln(os.Stderr, strings.Join(s.errs, "\n"))
		os.Exit(1)
	}
}

// collector hands the scraped metrics to the registry, which checks them (duplicates, label consistency).
type collector []prometheus.Metric

func (c collector) Describe(ch chan<- *prometheus.Desc) {}
func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		ch <- m
	}
}
