# Every table the report offers as a CSV download also as an HTML page the report shows in place
# (one rule per table, made in a loop; their pages are targets of rule all, the CSVs stay).

for _name, (_csv, _caption, _category, _title) in REPORT_TABLES.items():

    rule:
        name:
            f"html_{_name}"
        input:
            _csv,
        output:
            report(table_page(_name), caption=f"../report/{_caption}.rst", category=_category),
        log:
            table_page(_name).replace("results/report/tables/", "logs/html/").replace(".html", ".log"),
        localrule: True
        conda:
            "../../envs/spectral-reach.yaml"
        params:
            title=lambda w, title=_title: title.format(**w),
        shell:
            logged("spectral-reach table-html --csv {input} --html {output} --title {params.title:q}")
