"""What people see and call: the HTTP API and its route table, the
dashboard (its page: index.html, dashboard.js, dashboard.css), the alert
rules and the Prometheus metrics."""
