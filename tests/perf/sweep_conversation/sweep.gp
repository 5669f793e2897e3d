set terminal pngcairo size 900,560 noenhanced
set output 'tests/perf/sweep_conversation/sweep.png'
set datafile separator ','
set logscale x
set format x '%.0e'
set xlabel 'device capacity (tokens)'
set ylabel 'hit rate (fraction of prompt tokens)'
set yrange [0:*]
set grid
set key left top
set title 'conversation_trace.jsonl - page 512 tokens, eviction lru'
plot 'tests/perf/sweep_conversation/sweep.csv' using 1:5 with linespoints lw 2 title 'lru', '' using 1:6 with linespoints dt 2 lw 2 title 'optimal (Belady)'
