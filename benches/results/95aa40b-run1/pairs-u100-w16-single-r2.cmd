chatbench pairs --target 127.0.0.1:17000 --users 100 --window 16 --duration 5 --server-pid 14493
