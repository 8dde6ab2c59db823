chatbench pairs --target 127.0.0.1:17000 --users 100 --window 1 --duration 5 --server-pid 14493
