"""The console's pages, one script each. Named page_* because Streamlit puts this folder on
sys.path: a page called workers.py or alerts.py would hide the packages of the same name."""
