chatbench pairs --target 127.0.0.1:17000 --compare 127.0.0.1:17003 --rounds 2 --users 1000 --window 1 --duration 5 --server-pid 14493 --compare-pid 14518 --compare-pid 14549
