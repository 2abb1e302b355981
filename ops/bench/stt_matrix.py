def main(argv):
    raise SystemExit("stt_matrix: not written yet")
