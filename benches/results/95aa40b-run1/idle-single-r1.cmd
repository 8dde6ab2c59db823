chatbench idle --target 127.0.0.1:17004 --users 20000 --concurrency 8 --duration 5 --server-pid 15739
