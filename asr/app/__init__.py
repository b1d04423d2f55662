"""What a user runs besides the command line: the web page (`asr serve`) and the measurements (`asr bench`,
`asr tune-decoder`)."""
