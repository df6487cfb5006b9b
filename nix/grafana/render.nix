# Grafana's provisioned datasources and dashboards, rendered from the one
# catalog (nix/grafana/catalog.json). Dashboards name a datasource by its
# catalog key and get its uid and type from here, so a dashboard can only
# reference a provisioned datasource: an unknown key fails evaluation.
#
# Pure: builtins only, so the test suite evaluates it with nix-instantiate
# (no nixpkgs) and checks the very JSON Grafana is given. components/
# grafanaCatalog.ts reads the same catalog for the stack's dashboard URLs.
{
  catalog ? builtins.fromJSON (builtins.readFile ./catalog.json),
  constants ? builtins.fromJSON (builtins.readFile ../constants.json),
  # The unpacked grafana-pcp release (the flake input); null leaves out the
  # dashboards that come from the app.
  appDir ? null,
}:
let
  inherit (constants) ports;
  datasourceKeys = builtins.attrNames catalog.datasources;

  fail = msg: throw "nix/grafana/catalog.json: ${msg}";

  datasourceRef =
    where: key:
    if catalog.datasources ? ${key} then
      {
        inherit (catalog.datasources.${key}) type uid;
      }
    else
      fail "${where} names datasource '${key}'; use one of ${builtins.concatStringsSep ", " datasourceKeys}";

  datasources = map (
    key:
    let
      ds = catalog.datasources.${key};
      port =
        if ports ? ${ds.service} then
          ports.${ds.service}
        else
          fail "datasource '${key}' names service '${ds.service}', which has no port in nix/constants.json";
    in
    {
      inherit (ds) name uid type;
      access = "proxy";
      url = "http://127.0.0.1:${toString port}";
      isDefault = ds.isDefault or false;
      editable = false;
    }
    // (if ds ? jsonData then { inherit (ds) jsonData; } else { })
  ) datasourceKeys;

  refIds = [ "A" "B" "C" "D" "E" "F" "G" "H" ];
  mixed = {
    type = "datasource";
    uid = "-- Mixed --";
  };
  pluginDatasource = key: key != "prometheus";

  target =
    where: i: t:
    let
      ref = datasourceRef where t.datasource;
    in
    {
      refId = builtins.elemAt refIds i;
      datasource = ref;
      expr = t.expr;
      legendFormat = t.legend;
    }
    // (if pluginDatasource t.datasource then { format = "time_series"; } else { });

  # Two panels of 12 columns side by side, 8 high; a row header before each group.
  panelWidth = 12;
  panelHeight = 8;

  panel =
    dashUid: y0: id: i: p:
    let
      where = "dashboard '${dashUid}' panel '${p.title}'";
      keys = map (t: t.datasource) p.targets;
      first = builtins.head keys;
      same = builtins.all (k: k == first) keys;
    in
    {
      inherit id;
      type = "timeseries";
      inherit (p) title;
      datasource = if same then datasourceRef where first else mixed;
      gridPos = {
        h = panelHeight;
        w = panelWidth;
        x = panelWidth * (i - 2 * (i / 2));
        y = y0 + 1 + panelHeight * (i / 2);
      };
      fieldConfig = {
        defaults.unit = p.unit;
        overrides = [ ];
      };
      options.legend = {
        displayMode = "table";
        placement = "bottom";
        calcs = [
          "mean"
          "lastNotNull"
        ];
      };
      targets = builtins.genList (j: target where j (builtins.elemAt p.targets j)) (builtins.length p.targets);
    };

  rowHeight = row: 1 + panelHeight * ((builtins.length row.panels + 1) / 2);

  # Rows laid out top to bottom; ids count up across rows and panels.
  layout =
    dashUid: rows:
    (builtins.foldl'
      (
        acc: row:
        let
          n = builtins.length row.panels;
          header = {
            id = acc.id;
            type = "row";
            inherit (row) title;
            collapsed = false;
            gridPos = {
              h = 1;
              w = 2 * panelWidth;
              x = 0;
              y = acc.y;
            };
            panels = [ ];
          };
          body = builtins.genList (i: panel dashUid acc.y (acc.id + 1 + i) i (builtins.elemAt row.panels i)) n;
        in
        {
          id = acc.id + 1 + n;
          y = acc.y + rowHeight row;
          panels = acc.panels ++ [ header ] ++ body;
        }
      )
      {
        id = 1;
        y = 0;
        panels = [ ];
      }
      rows
    ).panels;

  ours = uid: d: {
    inherit uid;
    inherit (d) title refresh;
    tags = [ "pcp-eval" ];
    timezone = "browser";
    schemaVersion = 39;
    version = 1;
    time = {
      from = d.timeFrom;
      to = "now";
    };
    templating.list = [ ];
    annotations.list = [ ];
    panels = layout uid d.rows;
  };

  # The app's own dashboard as the release ships it, given a fixed uid so the
  # stack can print a direct URL (upstream leaves the uid to Grafana).
  fromApp =
    uid: d:
    (builtins.fromJSON (builtins.readFile "${appDir}/${d.path}"))
    // {
      inherit uid;
      id = null;
    };

  dashboardUids = builtins.filter (
    uid: catalog.dashboards.${uid}.from != "app" || appDir != null
  ) (builtins.attrNames catalog.dashboards);

  dashboards = map (
    uid:
    let
      d = catalog.dashboards.${uid};
    in
    {
      inherit uid;
      file = "${uid}.json";
      json =
        if d.from == "app" then
          fromApp uid d
        else if d.from == "pcp-eval" then
          ours uid d
        else
          fail "dashboard '${uid}': from must be \"app\" or \"pcp-eval\", got '${d.from}'";
    }
  ) dashboardUids;
in
{
  inherit datasources dashboards;
  inherit (catalog) plugin;
}
