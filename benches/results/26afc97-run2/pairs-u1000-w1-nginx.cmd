chatbench pairs --target 127.0.0.1:17000 --compare 127.0.0.1:17003 --rounds 3 --users 1000 --window 1 --duration 5 --server-pid 4054 --compare-pid 4079 --compare-pid 4109
