chatbench logins --target 127.0.0.1:17005 --concurrency 8 --duration 5 --server-pid 15906
