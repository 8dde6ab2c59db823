chatbench pairs --target 127.0.0.1:17000 --compare 127.0.0.1:17003 --rounds 3 --users 100 --window 16 --duration 5 --server-pid 4054 --compare-pid 4079 --compare-pid 4109
