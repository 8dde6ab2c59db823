chatbench pairs --targets 127.0.0.1:17001,127.0.0.1:17002 --users 1000 --window 1 --duration 5 --server-pid 14518 --server-pid 14549
