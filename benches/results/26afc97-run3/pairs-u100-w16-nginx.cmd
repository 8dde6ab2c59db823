chatbench pairs --target 127.0.0.1:17000 --compare 127.0.0.1:17003 --rounds 3 --users 100 --window 16 --duration 5 --server-pid 6888 --compare-pid 6913 --compare-pid 6943
