"""Records: plain data access to goodjob's tables, one statement per operation where possible."""
