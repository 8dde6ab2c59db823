chatbench logins --target 127.0.0.1:17005 --concurrency 1 --duration 5 --server-pid 15906
