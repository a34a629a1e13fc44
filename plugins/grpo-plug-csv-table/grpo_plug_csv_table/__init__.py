"""grpo-plug logger `csv_table`: one CSV row per step, one column per metric."""
