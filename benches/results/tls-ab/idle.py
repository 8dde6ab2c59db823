import socket, ssl, sys, time, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
port, n, tls, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "tls", int(sys.argv[4])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1])
ctx = ssl.create_default_context(cafile="/tmp/tls-bench/cert/cert.pem")
time.sleep(0.5)
before = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    socks.append(s)
time.sleep(2)
after = rss()
print(f"{'tls' if tls else 'plain'}: {n} idle connections: RSS {before} -> {after} KiB, {(after-before)*1024/n:.0f} bytes/connection")
