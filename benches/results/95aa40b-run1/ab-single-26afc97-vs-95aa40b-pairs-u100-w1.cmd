# A/B after the run, same machine: the 26afc97 server binary (A, port 17100) against the 95aa40b one (B, 17101),
# both: chatserver --listen ADDR --db sqlite:FRESH.db --log-level warn --argon2-m-kib 64
chatbench pairs --target 127.0.0.1:17100 --compare 127.0.0.1:17101 --rounds 3 --users 100 --window 1 --duration 5 --server-pid A --compare-pid B --timeout 180 --json ab-single-26afc97-vs-95aa40b-pairs-u100-w1.json
